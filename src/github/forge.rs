//! GitHub as a [`Forge`]: clone and push over HTTPS with a fresh installation token, pull
//! requests, comments and reactions through the REST API.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::json;

use super::client::{GitHub, GitHubError, Scope};
use crate::forge::request::PrHead;
use crate::forge::{
    Comment, Forge, ForgeError, GitCredentials, PullRequest, PullRequestSpec, ReactTarget, Thread,
};
use crate::repo::{RepoKind, RepoRef};
use crate::workspace::Author;

pub struct GitHubForge {
    pub gh: Arc<GitHub>,
}

impl From<GitHubError> for ForgeError {
    fn from(e: GitHubError) -> Self {
        match e {
            GitHubError::Transient(_) => Self::Transient(e.to_string()),
            _ => Self::Fatal(e.to_string()),
        }
    }
}

impl GitHubForge {
    /// `owner/name` for a repository this forge serves.
    pub fn full_name(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        let name = match repo.kind {
            RepoKind::Slug => Some(repo.url.as_str()),
            RepoKind::Http => repo
                .url
                .strip_prefix(self.gh.web_url.as_str())
                .and_then(|rest| rest.strip_prefix('/')),
            _ => None,
        };
        match name {
            Some(n) if n.split('/').count() == 2 => Ok(n.to_owned()),
            _ => Err(ForgeError::Fatal(format!(
                "{repo} is not a GitHub repository (expected owner/name or {}/owner/name)",
                self.gh.web_url
            ))),
        }
    }
}

#[async_trait]
impl Forge for GitHubForge {
    fn name(&self) -> &'static str {
        "github"
    }

    fn display_name(&self) -> &'static str {
        "GitHub"
    }

    fn write_roles(&self) -> &'static str {
        "write, maintain or admin"
    }

    fn noreply_email(&self, login: &str, id: i64) -> String {
        format!("{id}+{login}@users.noreply.github.com")
    }

    async fn change_head(&self, repo: &str, number: u64) -> Result<PrHead, ForgeError> {
        let pr = self
            .gh
            .call(
                Method::GET,
                &format!("/repos/{repo}/pulls/{number}"),
                None,
                repo,
                Scope::Read,
            )
            .await?;
        Ok(PrHead {
            repo: pr.body["head"]["repo"]["full_name"]
                .as_str()
                .map(str::to_owned),
            branch: pr.body["head"]["ref"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
    }

    async fn conversation(&self, repo: &str, n: u64) -> Result<Vec<(String, String)>, ForgeError> {
        Ok(self.discussion(repo, n).await?)
    }

    fn serves(&self, repo: &RepoRef) -> bool {
        self.full_name(repo).is_ok()
    }

    fn clone_url(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        Ok(format!("{}/{}.git", self.gh.web_url, self.full_name(repo)?))
    }

    async fn git_credentials(&self, repo: &RepoRef) -> Result<Option<GitCredentials>, ForgeError> {
        let token = self.gh.token(&self.full_name(repo)?, Scope::Git).await?;
        Ok(Some(GitCredentials {
            username: "x-access-token".to_owned(),
            password: token,
        }))
    }

    async fn forget_credentials(&self, repo: &RepoRef) {
        if let Ok(name) = self.full_name(repo) {
            self.gh.forget_token(&name, Scope::Git).await;
        }
    }

    async fn open_pull_request(
        &self,
        spec: &PullRequestSpec<'_>,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let repo = self.full_name(spec.repo)?;
        let owner = repo.split('/').next().unwrap_or_default();
        // Create first: that is one call in the usual case. A retry after a crash, or a
        // follow-up on an existing pull request, gets 422 and finds the open one instead.
        let body = json!({
            "title": spec.title, "head": spec.head, "base": spec.base, "body": spec.body,
            "maintainer_can_modify": true,
        });
        match self
            .gh
            .call(
                Method::POST,
                &format!("/repos/{repo}/pulls"),
                Some(&body),
                &repo,
                Scope::PullRequests,
            )
            .await
        {
            Ok(r) => Ok(Some(pull_request(&r.body, true)?)),
            // "A pull request already exists" (or head and base are the same branch).
            Err(GitHubError::Rejected { status: 422, .. }) => {
                match self.find_open(&repo, owner, spec.head).await? {
                    Some(pr) => Ok(Some(pr)),
                    None => Err(ForgeError::Fatal(format!(
                        "GitHub refused to open a pull request from {} into {}",
                        spec.head, spec.base
                    ))),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn commit_author(&self, repo: &RepoRef) -> Result<Option<Author>, ForgeError> {
        let bot = self.gh.bot_user(&self.full_name(repo)?).await?;
        Ok(Some(Author {
            name: bot.login,
            email: bot.email,
        }))
    }

    async fn comment(&self, thread: &Thread, body: &str) -> Result<Comment, ForgeError> {
        // Not repeated on a 5xx or a lost answer: GitHub may have posted it anyway (the
        // progress sink then looks for it before posting again).
        let r = self
            .gh
            .call_once(
                Method::POST,
                &format!("/repos/{}/issues/{}/comments", thread.repo, thread.number),
                Some(&json!({ "body": body })),
                &thread.repo,
                Scope::Comments,
            )
            .await?;
        let id = r.body["id"].as_i64().ok_or_else(|| {
            ForgeError::Transient("GitHub answered a new comment without an id".into())
        })?;
        Ok(Comment {
            id: id.to_string(),
            url: r.body["html_url"].as_str().unwrap_or_default().to_owned(),
        })
    }

    async fn find_comment(
        &self,
        thread: &Thread,
        marker: &str,
    ) -> Result<Option<Comment>, ForgeError> {
        let r = self
            .gh
            .call(
                Method::GET,
                &format!(
                    "/repos/{}/issues/{}/comments?per_page=100",
                    thread.repo, thread.number
                ),
                None,
                &thread.repo,
                Scope::Read,
            )
            .await?;
        Ok(r.body.as_array().into_iter().flatten().find_map(|c| {
            let ours = c["body"].as_str().is_some_and(|b| b.contains(marker));
            let id = c["id"].as_i64()?;
            ours.then(|| Comment {
                id: id.to_string(),
                url: c["html_url"].as_str().unwrap_or_default().to_owned(),
            })
        }))
    }

    async fn edit_comment(&self, thread: &Thread, id: &str, body: &str) -> Result<(), ForgeError> {
        self.gh
            .call(
                Method::PATCH,
                &format!("/repos/{}/issues/comments/{id}", thread.repo),
                Some(&json!({ "body": body })),
                &thread.repo,
                Scope::Comments,
            )
            .await?;
        Ok(())
    }

    async fn react(&self, thread: &Thread, target: &ReactTarget) -> Result<(), ForgeError> {
        let path = match target {
            ReactTarget::Issue => {
                format!("/repos/{}/issues/{}/reactions", thread.repo, thread.number)
            }
            ReactTarget::Comment { id } => {
                format!("/repos/{}/issues/comments/{id}/reactions", thread.repo)
            }
            ReactTarget::ReviewComment { id } => {
                format!("/repos/{}/pulls/comments/{id}/reactions", thread.repo)
            }
        };
        self.gh
            .call(
                Method::POST,
                &path,
                Some(&json!({"content": "eyes"})),
                &thread.repo,
                Scope::Comments,
            )
            .await?;
        Ok(())
    }

    async fn can_write(&self, repo: &str, user: &str, _user_id: i64) -> Result<bool, ForgeError> {
        Ok(self.gh.can_write(repo, user).await?)
    }
}

impl GitHubForge {
    /// The pull request's conversation, oldest first: its comments, its reviews and the review
    /// comments on the diff (with file and line). Of a long thread, the first and the last
    /// page of each: the newest words matter most.
    async fn discussion(&self, repo: &str, n: u64) -> Result<Vec<(String, String)>, GitHubError> {
        let mut said: Vec<(String, String, String)> = Vec::new();
        for path in [
            format!("/repos/{repo}/issues/{n}/comments?per_page=100"),
            format!("/repos/{repo}/pulls/{n}/reviews?per_page=100"),
            format!("/repos/{repo}/pulls/{n}/comments?per_page=100"),
        ] {
            let first = self
                .gh
                .call(Method::GET, &path, None, repo, Scope::Read)
                .await?;
            let mut pages = vec![first.body.clone()];
            if let Some(last) = first.last_page(&self.gh.api_url) {
                pages.push(
                    self.gh
                        .call(Method::GET, &last, None, repo, Scope::Read)
                        .await?
                        .body,
                );
            }
            let mut seen = std::collections::HashSet::new();
            for c in pages.iter().filter_map(|p| p.as_array()).flatten() {
                if !seen.insert(c["id"].as_i64()) {
                    continue;
                }
                let body = c["body"].as_str().unwrap_or_default().trim();
                if body.is_empty() {
                    continue;
                }
                let who = c["user"]["login"].as_str().unwrap_or("someone").to_owned();
                let when = c["created_at"]
                    .as_str()
                    .or(c["submitted_at"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                let text = match c["path"].as_str() {
                    Some(file) => match c["line"].as_u64().or(c["original_line"].as_u64()) {
                        Some(line) => format!("(on {file}:{line}) {body}"),
                        None => format!("(on {file}) {body}"),
                    },
                    None => body.to_owned(),
                };
                said.push((when, who, text));
            }
        }
        // RFC 3339 times in UTC sort as text.
        said.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(said.into_iter().map(|(_, who, text)| (who, text)).collect())
    }

    async fn find_open(
        &self,
        repo: &str,
        owner: &str,
        head: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("head", &format!("{owner}:{head}"))
            .append_pair("state", "open")
            .finish();
        let r = self
            .gh
            .call(
                Method::GET,
                &format!("/repos/{repo}/pulls?{query}"),
                None,
                repo,
                Scope::Read,
            )
            .await?;
        match r.body.as_array().and_then(|list| list.first()) {
            Some(pr) => Ok(Some(pull_request(pr, false)?)),
            None => Ok(None),
        }
    }
}

fn pull_request(body: &serde_json::Value, created: bool) -> Result<PullRequest, ForgeError> {
    let number = body["number"].as_u64().ok_or_else(|| {
        ForgeError::Transient("GitHub answered a pull request without a number".into())
    })?;
    Ok(PullRequest {
        url: body["html_url"].as_str().unwrap_or_default().to_owned(),
        number,
        created,
    })
}
