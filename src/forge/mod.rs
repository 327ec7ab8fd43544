//! Where repositories live and pull requests open. The worker only talks to a `Forge`;
//! GitHub, GitLab and the local forge implement it.

pub mod local;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::repo::RepoRef;

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
}
