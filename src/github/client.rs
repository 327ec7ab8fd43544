//! GitHub's REST API as the App: JWT for `/app` routes, installation tokens for the rest.
//!
//! Tokens are narrowed to one repository and the permissions of the step that needs them,
//! kept in memory only (moka) until five minutes before they expire, and looked up again at
//! every use, so a task that runs for hours still pushes with a valid token. Each call
//! honours GitHub's rate-limit headers, retries 5xx with backoff and re-mints once on 401.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::EncodingKey;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::{Mutex, OnceCell};

use super::jwt;
use super::settings::GitHubSettings;
use crate::forge::http::{Answer, Failure, Outcome, RetryPolicy};
use crate::store;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitHubError {
    /// Worth retrying later: network trouble, 5xx, rate limits.
    #[error("GitHub is unavailable: {0}")]
    Transient(String),
    #[error("GitHub: not found: {0}")]
    NotFound(String),
    /// GitHub refused the request and will refuse it again.
    #[error("GitHub refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("GitHub App misconfigured: {0}")]
    Config(String),
}

/// What an installation token may do: each step asks for only what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Reading the repository, its issues and pull requests, collaborator permissions.
    Read,
    /// Fetching and pushing git data.
    Git,
    /// Opening and finding pull requests.
    PullRequests,
    /// Comments and reactions on issues and pull requests.
    Comments,
}

impl Scope {
    fn permissions(self) -> Value {
        match self {
            Self::Read => {
                json!({"contents": "read", "issues": "read", "pull_requests": "read", "metadata": "read"})
            }
            Self::Git => json!({"contents": "write", "metadata": "read"}),
            Self::PullRequests => json!({"pull_requests": "write", "metadata": "read"}),
            Self::Comments => {
                json!({"issues": "write", "pull_requests": "write", "metadata": "read"})
            }
        }
    }
}

#[derive(Clone)]
struct Token {
    secret: SecretString,
    expires_at: DateTime<Utc>,
}

/// How much life a cached token must have left to be handed out.
const TOKEN_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
const ATTEMPTS: u32 = 4;

/// The App's bot user: commits are authored as it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotUser {
    pub login: String,
    pub email: String,
}

pub struct GitHub {
    http: reqwest::Client,
    pub api_url: String,
    pub web_url: String,
    app_id: u64,
    key: EncodingKey,
    pool: PgPool,
    jwt: Mutex<Option<(String, i64)>>,
    tokens: moka::future::Cache<TokenKey, Token>,
    installations: moka::future::Cache<String, i64>,
    permissions: moka::future::Cache<(String, String), bool>,
    bot: OnceCell<BotUser>,
    /// Longest a rate limit may make one call wait before it gives up (and the task retries).
    pub max_wait: Duration,
    /// First backoff after a 5xx; doubles per attempt.
    pub backoff: Duration,
}

pub type Response = Answer;

impl From<Failure> for GitHubError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Transient(m) => Self::Transient(m),
            Failure::NotFound(m) => Self::NotFound(m),
            Failure::Rejected { status, message } => Self::Rejected { status, message },
        }
    }
}

impl GitHub {
    pub fn new(settings: &GitHubSettings, pool: PgPool) -> Result<Arc<Self>, GitHubError> {
        let app = settings.app.as_ref().ok_or_else(|| {
            GitHubError::Config(
                "GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY and GITHUB_WEBHOOK_SECRET are not set"
                    .into(),
            )
        })?;
        let key = EncodingKey::from_rsa_pem(app.private_key.expose_secret().as_bytes()).map_err(
            |_| {
                GitHubError::Config("GITHUB_APP_PRIVATE_KEY is not an RSA key in PEM format".into())
            },
        )?;
        let http = http_client()?;
        Ok(Arc::new(Self {
            http,
            api_url: settings.api_url.clone(),
            web_url: settings.web_url.clone(),
            app_id: app.app_id,
            key,
            pool,
            jwt: Mutex::new(None),
            tokens: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            installations: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            permissions: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            bot: OnceCell::new(),
            max_wait: Duration::from_secs(60),
            backoff: Duration::from_millis(500),
        }))
    }

    async fn app_jwt(&self) -> Result<String, GitHubError> {
        let now = Utc::now().timestamp();
        let mut cached = self.jwt.lock().await;
        if let Some((token, made)) = cached.as_ref()
            && now - made < 5 * 60
        {
            return Ok(token.clone());
        }
        let token = jwt::app_jwt(self.app_id, &self.key, now)
            .map_err(|e| GitHubError::Config(format!("signing the App JWT: {e}")))?;
        *cached = Some((token.clone(), now));
        Ok(token)
    }

    /// The installation that covers `repo` (`owner/name`): from webhooks we recorded, else
    /// from GitHub.
    pub async fn installation_for(&self, repo: &str) -> Result<i64, GitHubError> {
        let key = repo.to_ascii_lowercase();
        if let Some(id) = self.installations.get(&key).await {
            return Ok(id);
        }
        let known = store::github::installation_for(&self.pool, &key)
            .await
            .map_err(|e| GitHubError::Transient(e.to_string()))?;
        let id = match known {
            Some(id) => id,
            None => {
                let found = self
                    .app_call(Method::GET, &format!("/repos/{repo}/installation"), None)
                    .await
                    .map_err(|e| match e {
                        GitHubError::NotFound(_) => GitHubError::Rejected {
                            status: 404,
                            message: format!(
                                "the GitHub App is not installed on {repo}: install it there first"
                            ),
                        },
                        other => other,
                    })?;
                let id = found.body["id"].as_i64().ok_or_else(|| {
                    GitHubError::Transient("installation answer without an id".into())
                })?;
                let account = found.body["account"]["login"].as_str().unwrap_or_default();
                if let Err(e) =
                    store::github::remember_repository(&self.pool, id, account, &key).await
                {
                    tracing::warn!(error = %e, "could not record the installation");
                }
                id
            }
        };
        self.installations.insert(key, id).await;
        Ok(id)
    }

    /// After an installation changed (uninstalled, suspended, repositories moved): forget
    /// what was cached about installations and their tokens.
    pub async fn forget_installations(&self) {
        self.installations.invalidate_all();
        self.tokens.invalidate_all();
    }

    /// Drops the cached token for `repo` and `scope` (refused by git, say).
    pub async fn forget_token(&self, repo: &str, scope: Scope) {
        if let Ok(installation) = self.installation_for(repo).await {
            self.tokens
                .invalidate(&token_key(installation, repo, scope))
                .await;
        }
    }

    /// A token for `repo` with `scope`, valid for at least five more minutes.
    pub async fn token(&self, repo: &str, scope: Scope) -> Result<SecretString, GitHubError> {
        let installation = self.installation_for(repo).await?;
        let key = token_key(installation, repo, scope);
        if let Some(token) = self.tokens.get(&key).await {
            if token.expires_at - TOKEN_MARGIN > Utc::now() {
                return Ok(token.secret);
            }
            self.tokens.invalidate(&key).await;
        }
        let name = repo.rsplit('/').next().unwrap_or(repo).to_owned();
        let token = self
            .tokens
            .try_get_with(key, self.mint(installation, name, scope))
            .await
            .map_err(|e: Arc<GitHubError>| (*e).clone())?;
        Ok(token.secret)
    }

    async fn mint(
        &self,
        installation: i64,
        repo_name: String,
        scope: Scope,
    ) -> Result<Token, GitHubError> {
        let body = json!({"repositories": [repo_name], "permissions": scope.permissions()});
        let answer = self
            .app_call(
                Method::POST,
                &format!("/app/installations/{installation}/access_tokens"),
                Some(&body),
            )
            .await?;
        let secret = answer.body["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| GitHubError::Transient("token answer without a token".into()))?;
        let expires_at = answer.body["expires_at"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
            // Unknown expiry: assume the documented hour.
            .unwrap_or_else(|| Utc::now() + chrono::TimeDelta::hours(1));
        Ok(Token {
            secret: SecretString::from(secret.to_owned()),
            expires_at,
        })
    }

    /// A call authenticated as the App itself.
    /// Boxed: minting a token is itself an App call, so `send` reaches itself through here.
    pub fn app_call<'a>(
        &'a self,
        method: Method,
        path: &'a str,
        body: Option<&'a Value>,
    ) -> futures::future::BoxFuture<'a, Result<Response, GitHubError>> {
        Box::pin(self.send(method, path, body, None, true))
    }

    /// Like [`GitHub::call`], for a request that must not be sent twice (creating a
    /// comment): only a refused connection or a rate limit, where GitHub surely did nothing,
    /// is tried again.
    pub async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        repo: &str,
        scope: Scope,
    ) -> Result<Response, GitHubError> {
        self.send(method, path, body, Some((repo, scope)), false)
            .await
    }

    /// A call on `repo` authenticated with an installation token of `scope`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        repo: &str,
        scope: Scope,
    ) -> Result<Response, GitHubError> {
        self.send(method, path, body, Some((repo, scope)), true)
            .await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        auth: Option<(&str, Scope)>,
        repeatable: bool,
    ) -> Result<Response, GitHubError> {
        let url = format!("{}{path}", self.api_url);
        let mut reminted = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let bearer = match auth {
                Some((repo, scope)) => self.token(repo, scope).await?,
                None => SecretString::from(self.app_jwt().await?),
            };
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
                .bearer_auth(bearer.expose_secret());
            if let Some(body) = body {
                request = request.json(body);
            }
            let policy = RetryPolicy {
                attempts: ATTEMPTS,
                max_wait: self.max_wait,
                backoff: self.backoff,
            };
            let call = format!("{method} {path}");
            match policy.attempt(request, &call, attempt, repeatable).await {
                Outcome::Done(answer) => return Ok(answer),
                Outcome::Retry(wait) => tokio::time::sleep(wait).await,
                Outcome::Failed(Failure::Rejected { status: 401, .. })
                    if !reminted && auth.is_some() =>
                {
                    // Revoked or expired early: mint a fresh one, once.
                    reminted = true;
                    if let Some((repo, scope)) = auth {
                        self.forget_token(repo, scope).await;
                    }
                }
                Outcome::Failed(failure) => return Err(failure.into()),
            }
        }
    }

    /// Whether `user` may ask maur for work on `repo`: write, maintain or admin.
    pub async fn can_write(&self, repo: &str, user: &str) -> Result<bool, GitHubError> {
        let key = (repo.to_ascii_lowercase(), user.to_ascii_lowercase());
        if let Some(allowed) = self.permissions.get(&key).await {
            return Ok(allowed);
        }
        let answer = self
            .call(
                Method::GET,
                &format!("/repos/{repo}/collaborators/{user}/permission"),
                None,
                repo,
                Scope::Read,
            )
            .await;
        let allowed = match answer {
            Ok(r) => may_write(&r.body),
            Err(GitHubError::NotFound(_)) => false,
            Err(e) => return Err(e),
        };
        self.permissions.insert(key, allowed).await;
        Ok(allowed)
    }

    /// The App's bot user (`<slug>[bot]`), looked up once.
    pub async fn bot_user(&self, repo: &str) -> Result<BotUser, GitHubError> {
        self.bot
            .get_or_try_init(|| async {
                let app = self.app_call(Method::GET, "/app", None).await?;
                let slug = app.body["slug"]
                    .as_str()
                    .ok_or_else(|| {
                        GitHubError::Transient("GET /app answered without a slug".into())
                    })?
                    .to_owned();
                let login = format!("{slug}[bot]");
                let user = self
                    .call(
                        Method::GET,
                        &format!("/users/{slug}%5Bbot%5D"),
                        None,
                        repo,
                        Scope::Read,
                    )
                    .await?;
                let id = user.body["id"].as_i64().unwrap_or_default();
                Ok(BotUser {
                    email: format!("{id}+{login}@users.noreply.github.com"),
                    login,
                })
            })
            .await
            .cloned()
    }
}

type TokenKey = (i64, String, Scope);

fn token_key(installation: i64, repo: &str, scope: Scope) -> TokenKey {
    (installation, repo.to_ascii_lowercase(), scope)
}

/// The HTTP client for GitHub (its token travels in `Authorization`).
pub fn http_client() -> Result<reqwest::Client, GitHubError> {
    crate::forge::http::client(true)
        .map_err(|e| GitHubError::Config(format!("building the HTTP client: {e}")))
}

/// GitHub's permission answer: `permission` is admin, write, read or none; maintain
/// already reads as write there. `role_name` is not consulted: an organization's custom
/// role may be called anything.
pub fn may_write(answer: &Value) -> bool {
    matches!(answer["permission"].as_str(), Some("admin" | "write"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_maintain_and_admin_may_ask() {
        assert!(may_write(
            &json!({"permission": "admin", "role_name": "admin"})
        ));
        assert!(may_write(
            &json!({"permission": "write", "role_name": "maintain"})
        ));
        assert!(may_write(
            &json!({"permission": "write", "role_name": "write"})
        ));
        assert!(!may_write(
            &json!({"permission": "read", "role_name": "triage"})
        ));
        assert!(!may_write(&json!({"permission": "none"})));
        assert!(!may_write(&json!({})));
    }
}
