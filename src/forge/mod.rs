//! Where repositories live and pull requests open. The worker only talks to a `Forge`;
//! GitHub, GitLab and the local forge implement it.

pub mod http;
pub mod local;
pub mod request;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::repo::RepoRef;
use crate::workspace::Author;

tokio::task_local! {
    /// Forge API calls made while doing one task: the worker scopes each task with a
    /// counter, and every forge client bumps it, so a task's events say what it cost.
    pub static API_CALLS: Arc<AtomicU32>;
}

/// Counts one forge API call against the current task, if there is one.
pub fn count_api_call() {
    let _ = API_CALLS.try_with(|calls| calls.fetch_add(1, Ordering::Relaxed));
}

/// An issue or pull/merge request: where maur replies and keeps its progress comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// `owner/name`.
    pub repo: String,
    pub number: u64,
    /// A pull/merge request rather than an issue (GitLab numbers them apart).
    #[serde(default)]
    pub change: bool,
}

/// What the 👀 reaction goes on: the comment that asked, or the issue itself (a label).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum ReactTarget {
    Issue,
    Comment { id: String },
    ReviewComment { id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: String,
    pub url: String,
}

/// Git-over-HTTPS credentials, minted at the moment of use and never written anywhere.
#[derive(Clone)]
pub struct GitCredentials {
    pub username: String,
    pub password: SecretString,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub url: String,
    pub number: u64,
    /// False when an open pull request for the same head already existed and was reused.
    pub created: bool,
}

/// What the worker asks the forge to open once a branch is pushed.
#[derive(Debug, Clone)]
pub struct PullRequestSpec<'a> {
    pub repo: &'a RepoRef,
    pub head: &'a str,
    pub base: &'a str,
    pub title: &'a str,
    pub body: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    /// Worth retrying: network trouble, 5xx, rate limits.
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help: no such repository, no permission, not this forge's repo.
    #[error("{0}")]
    Fatal(String),
}

#[async_trait]
pub trait Forge: Send + Sync + 'static {
    /// Short name for logs and events (`github`, `gitlab`, `local`).
    fn name(&self) -> &'static str;

    /// How people call it (`GitHub`), in replies and prompts.
    fn display_name(&self) -> &'static str {
        self.name()
    }

    /// The roles that may ask maur for work, as people on this forge know them.
    fn write_roles(&self) -> &'static str {
        "write access"
    }

    /// Whether pull/merge requests are numbered apart from issues (GitLab's `!4` and `#4`).
    fn numbers_changes_apart(&self) -> bool {
        false
    }

    /// How a task names `repo` (`owner/name` from a webhook) so that no other forge takes
    /// it: GitHub keeps the slug, GitLab gives its URL.
    fn repo_address(&self, repo: &str) -> String {
        repo.to_owned()
    }

    /// The keyword that closes an issue when the change merges (`Fixes #12`).
    fn closing_keyword(&self) -> &'static str {
        "Fixes"
    }

    /// The address commits credit a forge user with, without revealing their email.
    fn noreply_email(&self, login: &str, _id: i64) -> String {
        format!("{login}@users.noreply.localhost")
    }

    /// Whether this forge serves `repo`.
    fn serves(&self, repo: &RepoRef) -> bool;

    /// The URL git fetches from and pushes to: never with credentials in it.
    fn clone_url(&self, repo: &RepoRef) -> Result<String, ForgeError>;

    /// Credentials for one git operation, or `None` when none are needed.
    async fn git_credentials(&self, repo: &RepoRef) -> Result<Option<GitCredentials>, ForgeError>;

    /// Opens a pull request from `spec.head`, or returns the open one for that head.
    /// `None` when the forge has no pull requests (the local forge).
    async fn open_pull_request(
        &self,
        spec: &PullRequestSpec<'_>,
    ) -> Result<Option<PullRequest>, ForgeError>;

    /// The remote refused credentials this forge gave out: drop any cached copy, so the
    /// next [`Forge::git_credentials`] mints fresh ones.
    async fn forget_credentials(&self, _repo: &RepoRef) {}

    /// Who commits: the forge's bot identity, or `None` for maur's configured author.
    async fn commit_author(&self, _repo: &RepoRef) -> Result<Option<Author>, ForgeError> {
        Ok(None)
    }

    /// Posts a comment on an issue or pull request.
    async fn comment(&self, thread: &Thread, _body: &str) -> Result<Comment, ForgeError> {
        Err(self.unsupported("comments", thread))
    }

    /// maur's own comment on `thread` carrying `marker`, if there is one: after a create
    /// whose answer was lost, the comment may exist.
    async fn find_comment(
        &self,
        _thread: &Thread,
        _marker: &str,
    ) -> Result<Option<Comment>, ForgeError> {
        Ok(None)
    }

    /// Replaces the text of a comment maur posted earlier.
    async fn edit_comment(
        &self,
        thread: &Thread,
        _id: &str,
        _body: &str,
    ) -> Result<(), ForgeError> {
        Err(self.unsupported("comments", thread))
    }

    /// Puts 👀 on what asked for the work, so the person knows maur heard them.
    async fn react(&self, thread: &Thread, _target: &ReactTarget) -> Result<(), ForgeError> {
        Err(self.unsupported("reactions", thread))
    }

    /// Where the pull/merge request `number` of `repo` comes from (its head branch and the
    /// repository that branch lives in).
    async fn change_head(&self, repo: &str, number: u64) -> Result<request::PrHead, ForgeError> {
        Err(ForgeError::Fatal(format!(
            "{} has no pull requests (asked about {repo}#{number})",
            self.name()
        )))
    }

    /// A pull/merge request's discussion, oldest first, as (author, text).
    async fn conversation(
        &self,
        _repo: &str,
        _number: u64,
    ) -> Result<Vec<(String, String)>, ForgeError> {
        Ok(Vec::new())
    }

    /// Whether `user` may start work on `repo` (write access or more).
    async fn can_write(&self, repo: &str, _user: &str, _user_id: i64) -> Result<bool, ForgeError> {
        Err(ForgeError::Fatal(format!(
            "{} cannot check permissions on {repo}",
            self.name()
        )))
    }

    fn unsupported(&self, what: &str, thread: &Thread) -> ForgeError {
        ForgeError::Fatal(format!(
            "{} has no {what} (for {}#{})",
            self.name(),
            thread.repo,
            thread.number
        ))
    }
}
