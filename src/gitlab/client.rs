//! GitLab's REST API (v4) as maur's bot user: one token (`PRIVATE-TOKEN`), rate limits
//! honoured, 5xx retried with backoff, calls counted against the current task.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::OnceCell;

use super::settings::GitLabSettings;
use crate::forge::http::{Answer, Failure, Outcome, RetryPolicy};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitLabError {
    #[error("GitLab is unavailable: {0}")]
    Transient(String),
    #[error("GitLab: not found: {0}")]
    NotFound(String),
    #[error("GitLab refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("GitLab misconfigured: {0}")]
    Config(String),
}

const ATTEMPTS: u32 = 4;

/// The bot user the token belongs to: maur's own notes come from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotUser {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub email: String,
}

pub struct GitLab {
    http: reqwest::Client,
    /// `https://gitlab.com/api/v4`
    api: String,
    pub web_url: String,
    token: SecretString,
    bot: OnceCell<BotUser>,
    members: moka::future::Cache<(String, i64), bool>,
    pub max_wait: Duration,
    pub backoff: Duration,
}

pub type Response = Answer;

impl From<Failure> for GitLabError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Transient(m) => Self::Transient(m),
            Failure::NotFound(m) => Self::NotFound(m),
            Failure::Rejected { status, message } => Self::Rejected { status, message },
        }
    }
}

/// `group/sub/name` as GitLab wants it in a path: one segment, slashes encoded.
pub fn project_id(path: &str) -> String {
    url::form_urlencoded::byte_serialize(path.as_bytes()).collect()
}

impl GitLab {
    pub fn new(settings: &GitLabSettings) -> Result<Arc<Self>, GitLabError> {
        let token = settings
            .token
            .clone()
            .ok_or_else(|| GitLabError::Config("GITLAB_TOKEN is not set".into()))?;
        let http = crate::forge::http::client(false)
            .map_err(|e| GitLabError::Config(format!("building the HTTP client: {e}")))?;
        Ok(Arc::new(Self {
            http,
            api: format!("{}/api/v4", settings.url),
            web_url: settings.url.clone(),
            token,
            bot: OnceCell::new(),
            members: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            max_wait: Duration::from_secs(60),
            backoff: Duration::from_millis(500),
        }))
    }

    /// GitLab's host name, for noreply addresses.
    pub fn host(&self) -> String {
        url::Url::parse(&self.web_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "gitlab.com".into())
    }

    /// The bot's token, for git over HTTPS (never written anywhere).
    pub fn token(&self) -> SecretString {
        self.token.clone()
    }

    /// A call that may be repeated if GitLab fails or does not answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, GitLabError> {
        self.send(method, path, body, true).await
    }

    /// A call that must not be sent twice (creating a note): only a refused connection or
    /// a rate limit, where GitLab surely did nothing, is tried again.
    pub async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, GitLabError> {
        self.send(method, path, body, false).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        repeatable: bool,
    ) -> Result<Response, GitLabError> {
        let url = format!("{}{path}", self.api);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("PRIVATE-TOKEN", self.token.expose_secret());
            if let Some(body) = body {
                request = request.json(body);
            }
            let policy = RetryPolicy {
                attempts: ATTEMPTS,
                max_wait: self.max_wait,
                backoff: self.backoff,
            };
            match policy
                .attempt(request, &format!("{method} {path}"), attempt, repeatable)
                .await
            {
                Outcome::Done(answer) => return Ok(answer),
                Outcome::Retry(wait) => tokio::time::sleep(wait).await,
                Outcome::Failed(failure) => return Err(failure.into()),
            }
        }
    }

    /// The bot user behind the token, looked up once.
    pub async fn bot_user(&self) -> Result<BotUser, GitLabError> {
        self.bot
            .get_or_try_init(|| async {
                let me = self.call(Method::GET, "/user", None).await?.body;
                let id = me["id"].as_i64().ok_or_else(|| {
                    GitLabError::Transient("GET /user answered without an id".into())
                })?;
                let username = me["username"].as_str().unwrap_or("maur").to_owned();
                Ok(BotUser {
                    email: noreply(&self.host(), &username, id),
                    name: me["name"].as_str().unwrap_or(&username).to_owned(),
                    username,
                    id,
                })
            })
            .await
            .cloned()
    }

    /// Developer (30) or more on the project, cached a minute.
    pub async fn can_write(&self, project: &str, user_id: i64) -> Result<bool, GitLabError> {
        let key = (project.to_ascii_lowercase(), user_id);
        if let Some(allowed) = self.members.get(&key).await {
            return Ok(allowed);
        }
        let answer = self
            .call(
                Method::GET,
                &format!("/projects/{}/members/all/{user_id}", project_id(project)),
                None,
            )
            .await;
        let allowed = match answer {
            Ok(r) => r.body["access_level"].as_i64().unwrap_or(0) >= DEVELOPER,
            Err(GitLabError::NotFound(_)) => false,
            Err(e) => return Err(e),
        };
        self.members.insert(key, allowed).await;
        Ok(allowed)
    }
}

/// GitLab's access level for Developer: the least that may push and ask for work.
pub const DEVELOPER: i64 = 30;

/// GitLab's private commit address for a user.
pub fn noreply(host: &str, username: &str, id: i64) -> String {
    format!("{id}-{username}@users.noreply.{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_are_one_path_segment() {
        assert_eq!(project_id("group/sub/api"), "group%2Fsub%2Fapi");
        assert_eq!(
            noreply("gitlab.com", "ann", 7),
            "7-ann@users.noreply.gitlab.com"
        );
    }
}
