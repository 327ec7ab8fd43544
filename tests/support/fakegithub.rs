//! A fake GitHub REST API on 127.0.0.1 speaking GitHub's wire format. It checks the App JWT
//! against the test App's public key on `/app` routes and an unexpired installation token
//! for the right repository on every other call, and records what a maintainer would see:
//! comments and their edits, reactions, pull requests. Tokens it mints are also accepted by
//! the git server it is paired with (`git_tokens`).
#![allow(dead_code, clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

pub const APP_ID: u64 = 4242;
pub const INSTALLATION: i64 = 77;
pub const SLUG: &str = "maur-test";
pub const BOT_ID: i64 = 9001;

/// The test App's key pair, made once per test binary (PKCS#1 PEM, public PEM).
pub fn app_keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::EncodePublicKey;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let private = key
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
            .to_string();
        let public = key
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        (private, public)
    })
}

#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub repos: Vec<String>,
    pub permissions: Value,
    pub expires_at: chrono::DateTime<Utc>,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct FakeComment {
    pub id: i64,
    pub repo: String,
    pub number: u64,
    pub user: String,
    /// Every text it had, oldest first: the last is what people see now.
    pub bodies: Vec<String>,
    pub created: std::time::Instant,
}

impl FakeComment {
    pub fn body(&self) -> &str {
        self.bodies.last().map(String::as_str).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct FakePull {
    pub number: u64,
    pub repo: String,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub head_repo: String,
}

/// (login, path, line, body) of a comment on a pull request's diff.
pub type ReviewComment = (String, String, u64, String);

#[derive(Default)]
pub struct Recorded {
    pub issued: Vec<Issued>,
    pub comments: Vec<FakeComment>,
    /// (what was reacted to, content), e.g. ("issues/comments/5", "eyes").
    pub reactions: Vec<(String, String)>,
    /// When each reaction first arrived (for the latency benchmark).
    pub reacted_at: HashMap<String, std::time::Instant>,
    pub pulls: Vec<FakePull>,
    /// `METHOD /path` of every call, in order.
    pub calls: Vec<String>,
    /// Calls refused for bad credentials.
    pub unauthorized: u32,
    /// Calls refused because the token lacked the permission (narrowed to another step).
    pub forbidden: u32,
    /// Store the next N new comments but answer 502, as when GitHub's answer is lost.
    pub lose_comment_answers: u32,
    /// login → permission ("admin", "write", "read", "none").
    pub permissions: HashMap<String, String>,
    /// Comments already on an issue before maur arrives: (repo, number) → [(login, body)].
    pub conversation: HashMap<(String, u64), Vec<(String, String)>>,
    /// Review comments on a pull request's diff: (repo, number) → [(login, path, line, body)].
    pub review_comments: HashMap<(String, u64), Vec<ReviewComment>>,
    /// Reviews of a pull request: (repo, number) → [(login, body)].
    pub reviews: HashMap<(String, u64), Vec<(String, String)>>,
    /// This fake's own address, for `Link` headers.
    pub base_url: String,
    /// How long minted tokens say they live, and how long they really work.
    pub token_life: Duration,
    pub token_works_for: Option<Duration>,
    /// Answer the next N calls with 500 / with a secondary rate limit.
    pub fail_next: u32,
    pub rate_limit_next: u32,
    /// Only calls containing this text meet the injected failures (all when `None`).
    pub fault_filter: Option<String>,
    next_id: i64,
}

#[derive(Clone)]
pub struct FakeGitHub {
    pub url: String,
    pub state: Arc<Mutex<Recorded>>,
    /// Where minted tokens go so the git server accepts them.
    pub git_tokens: Arc<Mutex<Vec<String>>>,
    pub web_url: String,
}

type Shared = (Arc<Mutex<Recorded>>, Arc<Mutex<Vec<String>>>, String);

impl FakeGitHub {
    /// `web_url` is where clone URLs point (the paired git server); its tokens list is
    /// `git_tokens`.
    pub async fn start(web_url: &str, git_tokens: Arc<Mutex<Vec<String>>>) -> Self {
        let state = Arc::new(Mutex::new(Recorded {
            token_life: Duration::from_secs(3600),
            next_id: 1000,
            ..Default::default()
        }));
        let shared: Shared = (state.clone(), git_tokens.clone(), web_url.to_owned());
        let app = Router::new()
            .route("/app", get(app_info))
            .route("/app/installations/{id}/access_tokens", post(mint))
            .route("/repos/{o}/{r}/installation", get(repo_installation))
            .route("/users/{login}", get(user))
            .route(
                "/repos/{o}/{r}/collaborators/{u}/permission",
                get(permission),
            )
            .route(
                "/repos/{o}/{r}/issues/{n}/comments",
                post(create_comment).get(list_comments),
            )
            .route("/repos/{o}/{r}/issues/comments/{id}", patch(edit_comment))
            .route(
                "/repos/{o}/{r}/issues/comments/{id}/reactions",
                post(react_comment),
            )
            .route(
                "/repos/{o}/{r}/pulls/comments/{id}/reactions",
                post(react_review),
            )
            .route("/repos/{o}/{r}/issues/{n}/reactions", post(react_issue))
            .route("/repos/{o}/{r}/pulls", get(list_pulls).post(create_pull))
            .route("/repos/{o}/{r}/pulls/{n}", get(get_pull))
            .route(
                "/repos/{o}/{r}/pulls/{n}/comments",
                get(list_review_comments),
            )
            .route("/repos/{o}/{r}/pulls/{n}/reviews", get(list_reviews))
            .route("/app-manifests/{code}/conversions", post(convert))
            .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))) })
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        state.lock().unwrap().base_url = url.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            state,
            git_tokens,
            web_url: web_url.to_owned(),
        }
    }

    /// The variables that point maur at this fake as its GitHub App.
    pub fn vars(&self, secret: &str) -> Vec<(String, String)> {
        vec![
            ("GITHUB_APP_ID".into(), APP_ID.to_string()),
            ("GITHUB_APP_PRIVATE_KEY".into(), app_keys().0.clone()),
            ("GITHUB_WEBHOOK_SECRET".into(), secret.into()),
            ("GITHUB_API_URL".into(), self.url.clone()),
            ("GITHUB_URL".into(), self.web_url.clone()),
        ]
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn comments_on(&self, repo: &str, number: u64) -> Vec<FakeComment> {
        self.with(|s| {
            s.comments
                .iter()
                .filter(|c| c.repo == repo && c.number == number)
                .cloned()
                .collect()
        })
    }

    /// Revokes every token minted so far, for the API and for git.
    pub fn revoke_all(&self) {
        self.with(|s| s.issued.iter_mut().for_each(|i| i.revoked = true));
        self.git_tokens.lock().unwrap().clear();
    }

    pub fn tokens(&self) -> Vec<String> {
        self.with(|s| s.issued.iter().map(|i| i.token.clone()).collect())
    }

    /// Waits until `check` holds (a hang guard, not a timing assertion).
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
    (
        status,
        Json(json!({"message": message, "documentation_url": "https://docs.github.com/rest"})),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// The App JWT: RS256 over the test key, issued by the App, living under ten minutes.
fn check_jwt(headers: &HeaderMap) -> Result<(), Response> {
    let token = bearer(headers)
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "Requires authentication"))?;
    let key = DecodingKey::from_rsa_pem(app_keys().1.as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).map_err(|_| {
        error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        )
    })?;
    let c = data.claims;
    let (iat, exp) = (
        c["iat"].as_i64().unwrap_or(0),
        c["exp"].as_i64().unwrap_or(0),
    );
    let iss = c["iss"].as_str().and_then(|s| s.parse::<u64>().ok());
    if iss != Some(APP_ID) || exp - iat > 600 || iat > Utc::now().timestamp() {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "'Expiration time' claim ('exp') is too far in the future",
        ));
    }
    Ok(())
}

/// Every repository call: an unexpired, unrevoked token minted for this repository.
fn check_token(s: &mut Recorded, headers: &HeaderMap, repo: &str) -> Result<(), Response> {
    check_token_for(s, headers, repo, &[])
}

/// Writing calls: the token must also hold one of `need` (permission, level), as GitHub
/// refuses a token narrowed to other permissions.
fn check_token_for(
    s: &mut Recorded,
    headers: &HeaderMap,
    repo: &str,
    need: &[(&str, &str)],
) -> Result<(), Response> {
    let token = bearer(headers).or_else(|| {
        headers
            .get("authorization")?
            .to_str()
            .ok()?
            .strip_prefix("token ")
            .map(str::to_owned)
    });
    let ok = token.is_some_and(|t| {
        s.issued.iter().any(|i| {
            i.token == t
                && !i.revoked
                && i.expires_at > Utc::now()
                && i.repos.iter().any(|r| r.eq_ignore_ascii_case(repo))
        })
    });
    if !ok {
        s.unauthorized += 1;
        return Err(error(StatusCode::UNAUTHORIZED, "Bad credentials"));
    }
    let token = bearer(headers).unwrap_or_default();
    let allowed = need.is_empty()
        || s.issued.iter().any(|i| {
            i.token == token
                && need.iter().any(|(perm, level)| {
                    let has = i.permissions[*perm].as_str().unwrap_or("none");
                    has == *level || (*level == "read" && has == "write")
                })
        });
    if !allowed {
        s.forbidden += 1;
        return Err(error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        ));
    }
    Ok(())
}

const COMMENTING: &[(&str, &str)] = &[("issues", "write"), ("pull_requests", "write")];

/// Injected failures, then the call is recorded.
fn enter(s: &mut Recorded, call: String) -> Result<(), Response> {
    let faulty = s
        .fault_filter
        .as_ref()
        .is_none_or(|f| call.contains(f.as_str()));
    s.calls.push(call);
    if !faulty {
        return Ok(());
    }
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return Err(error(StatusCode::BAD_GATEWAY, "Server Error"));
    }
    if s.rate_limit_next > 0 {
        s.rate_limit_next -= 1;
        let mut r = error(
            StatusCode::FORBIDDEN,
            "You have exceeded a secondary rate limit.",
        );
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        return Err(r);
    }
    Ok(())
}

macro_rules! guard {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

async fn app_info(State((st, _, _)): State<Shared>, headers: HeaderMap) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(&mut s, "GET /app".into()));
    guard!(check_jwt(&headers));
    Json(json!({"id": APP_ID, "slug": SLUG, "name": "maur test", "owner": {"login": "acme"}}))
        .into_response()
}

async fn repo_installation(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r)): Path<(String, String)>,
) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(&mut s, format!("GET /repos/{o}/{r}/installation")));
    guard!(check_jwt(&headers));
    Json(json!({"id": INSTALLATION, "account": {"login": o}, "app_id": APP_ID})).into_response()
}

async fn mint(
    State((st, git_tokens, _)): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(
        &mut s,
        format!("POST /app/installations/{id}/access_tokens")
    ));
    guard!(check_jwt(&headers));
    if id != INSTALLATION {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let repos: Vec<String> = body["repositories"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str())
                .map(|n| format!("acme/{n}"))
                .collect()
        })
        .unwrap_or_default();
    // Deliberately not ghs_-shaped: maur must not assume a token's form.
    let token = format!("tok{}{}", uuid::Uuid::new_v4().simple(), s.issued.len());
    let real_life = s.token_works_for.unwrap_or(s.token_life);
    let expires_at = Utc::now() + chrono::Duration::from_std(s.token_life).unwrap();
    s.issued.push(Issued {
        token: token.clone(),
        repos,
        permissions: body["permissions"].clone(),
        expires_at: Utc::now() + chrono::Duration::from_std(real_life).unwrap(),
        revoked: false,
    });
    // Only a token that may write contents may push (or clone) over git.
    if body["permissions"]["contents"] == "write" {
        git_tokens.lock().unwrap().push(token.clone());
    }
    if s.token_works_for.is_some() {
        // Revoke it for git too once its real life is over.
        let (git_tokens, t) = (git_tokens.clone(), token.clone());
        tokio::spawn(async move {
            tokio::time::sleep(real_life).await;
            git_tokens.lock().unwrap().retain(|x| *x != t);
        });
    }
    (
        StatusCode::CREATED,
        Json(json!({"token": token, "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "permissions": body["permissions"]})),
    )
        .into_response()
}

async fn user(State((st, _, _)): State<Shared>, Path(login): Path<String>) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(&mut s, format!("GET /users/{login}")));
    let id = if login == format!("{SLUG}[bot]") {
        BOT_ID
    } else {
        1
    };
    Json(json!({"login": login, "id": id, "type": "Bot"})).into_response()
}

async fn permission(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r, u)): Path<(String, String, String)>,
) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(
        &mut s,
        format!("GET /repos/{o}/{r}/collaborators/{u}/permission")
    ));
    guard!(check_token(&mut s, &headers, &format!("{o}/{r}")));
    let perm = s
        .permissions
        .get(&u)
        .cloned()
        .unwrap_or_else(|| "read".into());
    let role = if perm == "none" {
        "none".to_owned()
    } else {
        perm.clone()
    };
    Json(json!({"permission": perm, "role_name": role, "user": {"login": u}})).into_response()
}

async fn create_comment(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r, n)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(
        &mut s,
        format!("POST /repos/{o}/{r}/issues/{n}/comments")
    ));
    let repo = format!("{o}/{r}");
    guard!(check_token_for(&mut s, &headers, &repo, COMMENTING));
    s.next_id += 1;
    let id = s.next_id;
    let text = body["body"].as_str().unwrap_or_default().to_owned();
    s.comments.push(FakeComment {
        id,
        repo: repo.clone(),
        number: n,
        user: format!("{SLUG}[bot]"),
        bodies: vec![text.clone()],
        created: std::time::Instant::now(),
    });
    if s.lose_comment_answers > 0 {
        s.lose_comment_answers -= 1;
        return error(StatusCode::BAD_GATEWAY, "Server Error");
    }
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "body": text, "html_url": format!("https://github.example/{repo}/issues/{n}#issuecomment-{id}")})),
    )
        .into_response()
}

/// Issue comments, oldest first, paginated like GitHub (`per_page`, `page`, `Link`).
async fn list_comments(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r, n)): Path<(String, String, u64)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(
        &mut s,
        format!("GET /repos/{o}/{r}/issues/{n}/comments")
    ));
    let repo = format!("{o}/{r}");
    guard!(check_token(&mut s, &headers, &repo));
    let mut list: Vec<Value> = s
        .conversation
        .get(&(repo.clone(), n))
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, (login, body))| {
            json!({"id": i, "user": {"login": login}, "body": body, "created_at": format!("2026-01-01T00:{:02}:{:02}Z", i / 60, i % 60)})
        })
        .collect();
    list.extend(
        s.comments
            .iter()
            .filter(|c| c.repo == repo && c.number == n)
            .map(|c| json!({"id": c.id, "user": {"login": c.user}, "body": c.body(), "created_at": "2026-06-01T00:00:00Z"})),
    );
    let per_page: usize = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let pages = list.len().div_ceil(per_page).max(1);
    let chunk: Vec<Value> = list
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut response = Json(Value::Array(chunk)).into_response();
    if pages > 1 {
        let base = format!(
            "{}/repos/{repo}/issues/{n}/comments?per_page={per_page}",
            s.base_url
        );
        let link = format!(
            "<{base}&page={}>; rel=\"next\", <{base}&page={pages}>; rel=\"last\"",
            page + 1
        );
        response.headers_mut().insert("link", link.parse().unwrap());
    }
    response
}

/// Reviews of a pull request (their summary bodies).
async fn list_reviews(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r, n)): Path<(String, String, u64)>,
) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(
        &mut s,
        format!("GET /repos/{o}/{r}/pulls/{n}/reviews")
    ));
    let repo = format!("{o}/{r}");
    guard!(check_token(&mut s, &headers, &repo));
    let list: Vec<Value> = s
        .reviews
        .get(&(repo, n))
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, (login, body))| json!({"id": 900 + i, "user": {"login": login}, "body": body, "state": "CHANGES_REQUESTED", "submitted_at": "2026-03-01T00:00:00Z"}))
        .collect();
    Json(Value::Array(list)).into_response()
}

async fn edit_comment(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r, id)): Path<(String, String, i64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(
        &mut s,
        format!("PATCH /repos/{o}/{r}/issues/comments/{id}")
    ));
    let repo = format!("{o}/{r}");
    guard!(check_token_for(&mut s, &headers, &repo, COMMENTING));
    let text = body["body"].as_str().unwrap_or_default().to_owned();
    match s.comments.iter_mut().find(|c| c.id == id && c.repo == repo) {
        Some(c) => {
            c.bodies.push(text);
            Json(json!({"id": id, "html_url": format!("https://github.example/{repo}#issuecomment-{id}")})).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn reaction(
    st: &Arc<Mutex<Recorded>>,
    headers: &HeaderMap,
    repo: String,
    what: String,
    body: &Value,
) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(
        &mut s,
        format!("POST /repos/{repo}/{what}/reactions")
    ));
    guard!(check_token_for(&mut s, headers, &repo, COMMENTING));
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    let fresh = !s.reactions.iter().any(|(w, c)| *w == what && *c == content);
    if fresh {
        s.reacted_at.insert(what.clone(), std::time::Instant::now());
        s.reactions.push((what, content.clone()));
    }
    // GitHub answers 200 for a reaction that already exists, 201 for a new one.
    let status = if fresh {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(json!({"id": 1, "content": content}))).into_response()
}

async fn react_comment(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r, id)): Path<(String, String, i64)>,
    Json(body): Json<Value>,
) -> Response {
    reaction(
        &st,
        &headers,
        format!("{o}/{r}"),
        format!("issues/comments/{id}"),
        &body,
    )
}

async fn react_review(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r, id)): Path<(String, String, i64)>,
    Json(body): Json<Value>,
) -> Response {
    reaction(
        &st,
        &headers,
        format!("{o}/{r}"),
        format!("pulls/comments/{id}"),
        &body,
    )
}

async fn react_issue(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r, n)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    reaction(
        &st,
        &headers,
        format!("{o}/{r}"),
        format!("issues/{n}"),
        &body,
    )
}

fn pull_json(p: &FakePull) -> Value {
    json!({
        "number": p.number,
        "html_url": format!("https://github.example/{}/pull/{}", p.repo, p.number),
        "title": p.title, "body": p.body, "state": "open",
        "head": {"ref": p.head, "repo": {"full_name": p.head_repo}},
        "base": {"ref": p.base, "repo": {"full_name": p.repo}},
    })
}

async fn list_pulls(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(&mut s, format!("GET /repos/{o}/{r}/pulls")));
    let repo = format!("{o}/{r}");
    guard!(check_token(&mut s, &headers, &repo));
    let head = q.get("head").cloned();
    let list: Vec<Value> = s
        .pulls
        .iter()
        .filter(|p| p.repo == repo)
        .filter(|p| {
            head.as_ref().is_none_or(|h| {
                *h == format!(
                    "{}:{}",
                    p.head_repo.split('/').next().unwrap_or_default(),
                    p.head
                )
            })
        })
        .map(pull_json)
        .collect();
    Json(Value::Array(list)).into_response()
}

async fn create_pull(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(&mut s, format!("POST /repos/{o}/{r}/pulls")));
    let repo = format!("{o}/{r}");
    guard!(check_token_for(
        &mut s,
        &headers,
        &repo,
        &[("pull_requests", "write")]
    ));
    let head = body["head"].as_str().unwrap_or_default().to_owned();
    if s.pulls.iter().any(|p| p.repo == repo && p.head == head) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: A pull request already exists",
        );
    }
    let number = 100 + s.pulls.len() as u64;
    let pull = FakePull {
        number,
        repo: repo.clone(),
        head,
        base: body["base"].as_str().unwrap_or_default().to_owned(),
        title: body["title"].as_str().unwrap_or_default().to_owned(),
        body: body["body"].as_str().unwrap_or_default().to_owned(),
        head_repo: repo,
    };
    let answer = pull_json(&pull);
    s.pulls.push(pull);
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn get_pull(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r, n)): Path<(String, String, u64)>,
) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(&mut s, format!("GET /repos/{o}/{r}/pulls/{n}")));
    let repo = format!("{o}/{r}");
    guard!(check_token(&mut s, &headers, &repo));
    match s.pulls.iter().find(|p| p.repo == repo && p.number == n) {
        Some(p) => Json(pull_json(p)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// The manifest flow's last step: only `good-code` converts, once.
async fn convert(State((st, _, _)): State<Shared>, Path(code): Path<String>) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(
        &mut s,
        format!("POST /app-manifests/{code}/conversions")
    ));
    if code != "good-code"
        || s.calls
            .iter()
            .filter(|c| c.contains("/app-manifests/"))
            .count()
            > 1
    {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    (
        StatusCode::CREATED,
        Json(json!({
            "id": APP_ID, "slug": SLUG, "name": "maur test", "html_url": format!("https://github.example/apps/{SLUG}"),
            "pem": app_keys().0, "webhook_secret": "fresh-webhook-secret", "client_id": "Iv1.x", "client_secret": "cs",
        })),
    )
        .into_response()
}

async fn list_review_comments(
    State((st, _, _)): State<Shared>,
    headers: HeaderMap,
    Path((o, r, n)): Path<(String, String, u64)>,
) -> Response {
    let mut s = st.lock().unwrap();
    guard!(enter(
        &mut s,
        format!("GET /repos/{o}/{r}/pulls/{n}/comments")
    ));
    let repo = format!("{o}/{r}");
    guard!(check_token(&mut s, &headers, &repo));
    let list: Vec<Value> = s
        .review_comments
        .get(&(repo, n))
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, (login, path, line, body))| json!({"id": 700 + i, "user": {"login": login}, "path": path, "line": line, "body": body, "created_at": "2026-02-01T00:00:00Z"}))
        .collect();
    Json(Value::Array(list)).into_response()
}
