//! A fake GitLab on 127.0.0.1: the REST API (v4) and, on the same address, the git server,
//! as GitLab serves both from one host. Every API call must carry the bot's token in
//! `PRIVATE-TOKEN`; git demands `oauth2:<token>`. It records what a developer would see:
//! notes and their edits, award emoji, merge requests, hooks.
#![allow(dead_code, clippy::result_large_err)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::githttp::GitServer;

pub const BOT_ID: i64 = 900;
pub const BOT: &str = "project_5_bot_maur";

#[derive(Debug, Clone)]
pub struct Note {
    pub id: i64,
    pub project: String,
    /// `issues` or `merge_requests`.
    pub kind: String,
    pub iid: u64,
    pub author: String,
    pub bodies: Vec<String>,
    pub created: std::time::Instant,
}

impl Note {
    pub fn body(&self) -> &str {
        self.bodies.last().map(String::as_str).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Mr {
    pub iid: u64,
    pub project: String,
    pub source: String,
    pub target: String,
    pub title: String,
    pub description: String,
    pub source_project_id: i64,
}

#[derive(Default)]
pub struct Recorded {
    pub notes: Vec<Note>,
    /// (what, emoji), e.g. ("issues/12/notes/99", "eyes").
    pub awards: Vec<(String, String)>,
    pub awarded_at: HashMap<String, std::time::Instant>,
    pub mrs: Vec<Mr>,
    pub hooks: Vec<Value>,
    /// user id → access level.
    pub members: HashMap<i64, i64>,
    pub calls: Vec<String>,
    pub unauthorized: u32,
    /// Answer the next N calls containing `fault_filter` with 502 / with a rate limit.
    pub fail_next: u32,
    pub rate_limit_next: u32,
    pub fault_filter: Option<String>,
    next_id: i64,
}

#[derive(Clone)]
pub struct FakeGitLab {
    pub url: String,
    pub token: String,
    pub state: Arc<Mutex<Recorded>>,
    pub git: GitServer,
}

type Shared = (Arc<Mutex<Recorded>>, String);

impl FakeGitLab {
    /// The API and git over HTTP on one address; repositories live under `root`.
    pub async fn start(root: PathBuf, token: &str) -> Self {
        let state = Arc::new(Mutex::new(Recorded {
            next_id: 5000,
            ..Default::default()
        }));
        let shared: Shared = (state.clone(), token.to_owned());
        let p = "/api/v4/projects/{id}";
        let api = Router::new()
            .route("/api/v4/user", get(user))
            .route(&format!("{p}/members/all/{{uid}}"), get(member))
            .route(
                &format!("{p}/{{kind}}/{{iid}}/notes"),
                post(create_note).get(list_notes),
            )
            .route(
                &format!("{p}/{{kind}}/{{iid}}/notes/{{nid}}"),
                put(edit_note),
            )
            .route(
                &format!("{p}/{{kind}}/{{iid}}/notes/{{nid}}/award_emoji"),
                post(award_note),
            )
            .route(
                &format!("{p}/{{kind}}/{{iid}}/award_emoji"),
                post(award_item),
            )
            .route(
                &format!("{p}/merge_requests"),
                get(list_mrs).post(create_mr),
            )
            .route(&format!("{p}/merge_requests/{{iid}}"), get(get_mr))
            .route(&format!("{p}/hooks"), get(list_hooks).post(create_hook))
            .route(&format!("{p}/hooks/{{hid}}"), put(edit_hook))
            .with_state(shared);
        let git = GitServer::start_with(root, "oauth2", token, api).await;
        Self {
            url: git.base.clone(),
            token: token.to_owned(),
            state,
            git,
        }
    }

    pub fn vars(&self, secret: &str) -> Vec<(String, String)> {
        vec![
            ("GITLAB_URL".into(), self.url.clone()),
            ("GITLAB_TOKEN".into(), self.token.clone()),
            ("GITLAB_WEBHOOK_SECRET".into(), secret.into()),
        ]
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn notes_on(&self, kind: &str, iid: u64) -> Vec<Note> {
        self.with(|s| {
            s.notes
                .iter()
                .filter(|n| n.kind == kind && n.iid == iid)
                .cloned()
                .collect()
        })
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

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message}))).into_response()
}

/// Every call: the bot's token in `PRIVATE-TOKEN`, recorded either way.
fn enter<'a>(
    st: &'a Shared,
    headers: &HeaderMap,
    call: String,
) -> Result<std::sync::MutexGuard<'a, Recorded>, Response> {
    let mut s = st.0.lock().unwrap();
    let faulty = s
        .fault_filter
        .as_ref()
        .is_none_or(|f| call.contains(f.as_str()));
    s.calls.push(call);
    if faulty && s.fail_next > 0 {
        s.fail_next -= 1;
        return Err(error(StatusCode::BAD_GATEWAY, "502 Bad Gateway"));
    }
    if faulty && s.rate_limit_next > 0 {
        s.rate_limit_next -= 1;
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Retry later");
        let reset = chrono::Utc::now().timestamp() + 1;
        r.headers_mut()
            .insert("ratelimit-remaining", "0".parse().unwrap());
        r.headers_mut()
            .insert("ratelimit-reset", reset.to_string().parse().unwrap());
        return Err(r);
    }
    let ok = headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t == st.1);
    if !ok {
        s.unauthorized += 1;
        return Err(error(StatusCode::UNAUTHORIZED, "401 Unauthorized"));
    }
    Ok(s)
}

macro_rules! guard {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

async fn user(State(st): State<Shared>, headers: HeaderMap) -> Response {
    let _s = guard!(enter(&st, &headers, "GET /user".into()));
    Json(json!({"id": BOT_ID, "username": BOT, "name": "maur", "bot": true})).into_response()
}

async fn member(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, uid)): Path<(String, i64)>,
) -> Response {
    let s = guard!(enter(
        &st,
        &headers,
        format!("GET /projects/{id}/members/all/{uid}")
    ));
    match s.members.get(&uid) {
        Some(level) => Json(json!({"id": uid, "access_level": level})).into_response(),
        None => error(StatusCode::NOT_FOUND, "404 Not found"),
    }
}

fn note_url(project: &str, kind: &str, iid: u64, id: i64) -> String {
    format!("https://gitlab.example/{project}/-/{kind}/{iid}#note_{id}")
}

async fn create_note(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, kind, iid)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = guard!(enter(
        &st,
        &headers,
        format!("POST /projects/{id}/{kind}/{iid}/notes")
    ));
    s.next_id += 1;
    let nid = s.next_id;
    let text = body["body"].as_str().unwrap_or_default().to_owned();
    s.notes.push(Note {
        id: nid,
        project: id.clone(),
        kind: kind.clone(),
        iid,
        author: BOT.into(),
        bodies: vec![text.clone()],
        created: std::time::Instant::now(),
    });
    (
        StatusCode::CREATED,
        Json(json!({"id": nid, "body": text, "author": {"id": BOT_ID, "username": BOT}})),
    )
        .into_response()
}

async fn list_notes(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, kind, iid)): Path<(String, String, u64)>,
) -> Response {
    let s = guard!(enter(
        &st,
        &headers,
        format!("GET /projects/{id}/{kind}/{iid}/notes")
    ));
    let list: Vec<Value> = s
        .notes
        .iter()
        .filter(|n| n.project == id && n.kind == kind && n.iid == iid)
        .map(|n| json!({"id": n.id, "body": n.body(), "author": {"username": n.author}, "system": false, "url": note_url(&n.project, &n.kind, n.iid, n.id)}))
        .collect();
    Json(Value::Array(list)).into_response()
}

async fn edit_note(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, kind, iid, nid)): Path<(String, String, u64, i64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = guard!(enter(
        &st,
        &headers,
        format!("PUT /projects/{id}/{kind}/{iid}/notes/{nid}")
    ));
    let text = body["body"].as_str().unwrap_or_default().to_owned();
    match s
        .notes
        .iter_mut()
        .find(|n| n.id == nid && n.project == id && n.kind == kind && n.iid == iid)
    {
        Some(n) => {
            n.bodies.push(text);
            Json(json!({"id": nid})).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "404 Not found"),
    }
}

fn award(s: &mut Recorded, what: String, body: &Value) -> Response {
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    if s.awards.iter().any(|(w, n)| *w == what && *n == name) {
        // GitLab refuses the same award twice.
        return error(
            StatusCode::NOT_FOUND,
            "404 Award Emoji Name has already been taken",
        );
    }
    s.awarded_at.insert(what.clone(), std::time::Instant::now());
    s.awards.push((what, name.clone()));
    (StatusCode::CREATED, Json(json!({"id": 1, "name": name}))).into_response()
}

async fn award_note(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, kind, iid, nid)): Path<(String, String, u64, i64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = guard!(enter(
        &st,
        &headers,
        format!("POST /projects/{id}/{kind}/{iid}/notes/{nid}/award_emoji")
    ));
    award(&mut s, format!("{kind}/{iid}/notes/{nid}"), &body)
}

async fn award_item(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, kind, iid)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = guard!(enter(
        &st,
        &headers,
        format!("POST /projects/{id}/{kind}/{iid}/award_emoji")
    ));
    award(&mut s, format!("{kind}/{iid}"), &body)
}

fn mr_json(m: &Mr) -> Value {
    json!({
        "iid": m.iid, "title": m.title, "description": m.description, "state": "opened",
        "source_branch": m.source, "target_branch": m.target,
        "source_project_id": m.source_project_id, "target_project_id": 5,
        "web_url": format!("https://gitlab.example/{}/-/merge_requests/{}", m.project, m.iid),
    })
}

async fn list_mrs(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = guard!(enter(
        &st,
        &headers,
        format!("GET /projects/{id}/merge_requests")
    ));
    let list: Vec<Value> = s
        .mrs
        .iter()
        .filter(|m| m.project == id && q.get("source_branch").is_none_or(|b| *b == m.source))
        .map(mr_json)
        .collect();
    Json(Value::Array(list)).into_response()
}

async fn create_mr(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = guard!(enter(
        &st,
        &headers,
        format!("POST /projects/{id}/merge_requests")
    ));
    let source = body["source_branch"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let target = body["target_branch"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if source == target {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "You can't use same project/branch for source and target",
        );
    }
    if s.mrs.iter().any(|m| m.project == id && m.source == source) {
        return error(
            StatusCode::CONFLICT,
            "Another open merge request already exists for this source branch",
        );
    }
    let mr = Mr {
        iid: 1 + s.mrs.len() as u64,
        project: id,
        source,
        target,
        title: body["title"].as_str().unwrap_or_default().to_owned(),
        description: body["description"].as_str().unwrap_or_default().to_owned(),
        source_project_id: 5,
    };
    let answer = mr_json(&mr);
    s.mrs.push(mr);
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn get_mr(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, iid)): Path<(String, u64)>,
) -> Response {
    let s = guard!(enter(
        &st,
        &headers,
        format!("GET /projects/{id}/merge_requests/{iid}")
    ));
    match s.mrs.iter().find(|m| m.project == id && m.iid == iid) {
        Some(m) => Json(mr_json(m)).into_response(),
        None => error(StatusCode::NOT_FOUND, "404 Not found"),
    }
}

async fn list_hooks(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let s = guard!(enter(&st, &headers, format!("GET /projects/{id}/hooks")));
    Json(Value::Array(s.hooks.clone())).into_response()
}

async fn create_hook(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(mut body): Json<Value>,
) -> Response {
    let mut s = guard!(enter(&st, &headers, format!("POST /projects/{id}/hooks")));
    body["id"] = json!(s.hooks.len() + 1);
    s.hooks.push(body.clone());
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn edit_hook(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, hid)): Path<(String, i64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = guard!(enter(
        &st,
        &headers,
        format!("PUT /projects/{id}/hooks/{hid}")
    ));
    match s.hooks.iter_mut().find(|h| h["id"] == json!(hid)) {
        Some(h) => {
            let mut updated = body.clone();
            updated["id"] = json!(hid);
            *h = updated.clone();
            Json(updated).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "404 Not found"),
    }
}
