//! GitLab as a [`Forge`]: clone and push over HTTPS as the bot (`oauth2` + token), merge
//! requests, notes and award emoji through the REST API.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{GitLab, GitLabError, project_id};
use crate::forge::request::PrHead;
use crate::forge::{
    Comment, Forge, ForgeError, GitCredentials, PullRequest, PullRequestSpec, ReactTarget, Thread,
};
use crate::repo::{RepoKind, RepoRef};
use crate::workspace::Author;

pub struct GitLabForge {
    pub gl: Arc<GitLab>,
}

impl From<GitLabError> for ForgeError {
    fn from(e: GitLabError) -> Self {
        match e {
            GitLabError::Transient(_) => Self::Transient(e.to_string()),
            _ => Self::Fatal(e.to_string()),
        }
    }
}

/// `issues` or `merge_requests`: GitLab numbers them apart.
fn kind(thread: &Thread) -> &'static str {
    if thread.change {
        "merge_requests"
    } else {
        "issues"
    }
}

impl GitLabForge {
    /// `group/name` (or `group/sub/name`) for a repository this forge serves.
    pub fn path(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        let path = match repo.kind {
            RepoKind::Slug => Some(repo.url.as_str()),
            RepoKind::Http => repo
                .url
                .strip_prefix(self.gl.web_url.as_str())
                .and_then(|rest| rest.strip_prefix('/')),
            _ => None,
        };
        match path {
            Some(p) if p.split('/').count() >= 2 => Ok(p.to_owned()),
            _ => Err(ForgeError::Fatal(format!(
                "{repo} is not a GitLab project (expected group/name or {}/group/name)",
                self.gl.web_url
            ))),
        }
    }

    fn notes(&self, thread: &Thread) -> String {
        format!(
            "/projects/{}/{}/{}/notes",
            project_id(&thread.repo),
            kind(thread),
            thread.number
        )
    }

    fn note_url(&self, thread: &Thread, id: i64) -> String {
        format!(
            "{}/{}/-/{}/{}#note_{id}",
            self.gl.web_url,
            thread.repo,
            kind(thread),
            thread.number
        )
    }

    async fn find_open(
        &self,
        project: &str,
        source: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("source_branch", source)
            .append_pair("state", "opened")
            .finish();
        let r = self
            .gl
            .call(
                Method::GET,
                &format!("/projects/{}/merge_requests?{query}", project_id(project)),
                None,
            )
            .await?;
        // maur's branches live in the project itself: a fork's MR with the same branch name
        // is someone else's.
        let ours = r
            .body
            .as_array()
            .into_iter()
            .flatten()
            .find(|mr| mr["source_project_id"] == mr["target_project_id"]);
        match ours {
            Some(mr) => Ok(Some(merge_request(mr, false)?)),
            None => Ok(None),
        }
    }
}

fn merge_request(body: &Value, created: bool) -> Result<PullRequest, ForgeError> {
    let number = body["iid"].as_u64().ok_or_else(|| {
        ForgeError::Transient("GitLab answered a merge request without an iid".into())
    })?;
    Ok(PullRequest {
        url: body["web_url"].as_str().unwrap_or_default().to_owned(),
        number,
        created,
    })
}

#[async_trait]
impl Forge for GitLabForge {
    fn name(&self) -> &'static str {
        "gitlab"
    }

    fn display_name(&self) -> &'static str {
        "GitLab"
    }

    fn write_roles(&self) -> &'static str {
        "Developer or higher"
    }

    fn closing_keyword(&self) -> &'static str {
        "Closes"
    }

    fn numbers_changes_apart(&self) -> bool {
        true
    }

    fn repo_address(&self, repo: &str) -> String {
        format!("{}/{repo}", self.gl.web_url)
    }

    fn noreply_email(&self, login: &str, id: i64) -> String {
        super::client::noreply(&self.gl.host(), login, id)
    }

    fn serves(&self, repo: &RepoRef) -> bool {
        self.path(repo).is_ok()
    }

    fn clone_url(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        Ok(format!("{}/{}.git", self.gl.web_url, self.path(repo)?))
    }

    async fn git_credentials(&self, _repo: &RepoRef) -> Result<Option<GitCredentials>, ForgeError> {
        Ok(Some(GitCredentials {
            username: "oauth2".to_owned(),
            password: self.gl.token(),
        }))
    }

    async fn open_pull_request(
        &self,
        spec: &PullRequestSpec<'_>,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let project = self.path(spec.repo)?;
        let body = json!({
            "source_branch": spec.head, "target_branch": spec.base,
            "title": spec.title, "description": spec.body,
        });
        match self
            .gl
            .call(
                Method::POST,
                &format!("/projects/{}/merge_requests", project_id(&project)),
                Some(&body),
            )
            .await
        {
            Ok(r) => Ok(Some(merge_request(&r.body, true)?)),
            // 409: one is open for this branch already (a retry, a follow-up); 422: the
            // follow-up's branch is both source and target.
            Err(GitLabError::Rejected {
                status: 409 | 422, ..
            }) => match self.find_open(&project, spec.head).await? {
                Some(mr) => Ok(Some(mr)),
                None => Err(ForgeError::Fatal(format!(
                    "GitLab refused to open a merge request from {} into {}",
                    spec.head, spec.base
                ))),
            },
            Err(e) => Err(e.into()),
        }
    }

    async fn commit_author(&self, _repo: &RepoRef) -> Result<Option<Author>, ForgeError> {
        let bot = self.gl.bot_user().await?;
        Ok(Some(Author {
            name: bot.name,
            email: bot.email,
        }))
    }

    async fn comment(&self, thread: &Thread, body: &str) -> Result<Comment, ForgeError> {
        // Not repeated on a lost answer: the progress sink looks for it before posting again.
        let r = self
            .gl
            .call_once(
                Method::POST,
                &self.notes(thread),
                Some(&json!({ "body": body })),
            )
            .await?;
        let id = r.body["id"].as_i64().ok_or_else(|| {
            ForgeError::Transient("GitLab answered a new note without an id".into())
        })?;
        Ok(Comment {
            id: id.to_string(),
            url: self.note_url(thread, id),
        })
    }

    async fn find_comment(
        &self,
        thread: &Thread,
        marker: &str,
    ) -> Result<Option<Comment>, ForgeError> {
        let r = self
            .gl
            .call(
                Method::GET,
                &format!(
                    "{}?per_page=100&sort=desc&order_by=created_at",
                    self.notes(thread)
                ),
                None,
            )
            .await?;
        Ok(r.body.as_array().into_iter().flatten().find_map(|n| {
            let id = n["id"].as_i64()?;
            n["body"]
                .as_str()
                .is_some_and(|b| b.contains(marker))
                .then(|| Comment {
                    id: id.to_string(),
                    url: self.note_url(thread, id),
                })
        }))
    }

    async fn edit_comment(&self, thread: &Thread, id: &str, body: &str) -> Result<(), ForgeError> {
        self.gl
            .call(
                Method::PUT,
                &format!("{}/{id}", self.notes(thread)),
                Some(&json!({ "body": body })),
            )
            .await?;
        Ok(())
    }

    async fn react(&self, thread: &Thread, target: &ReactTarget) -> Result<(), ForgeError> {
        let base = format!(
            "/projects/{}/{}/{}",
            project_id(&thread.repo),
            kind(thread),
            thread.number
        );
        let path = match target {
            ReactTarget::Issue => format!("{base}/award_emoji"),
            ReactTarget::Comment { id } | ReactTarget::ReviewComment { id } => {
                format!("{base}/notes/{id}/award_emoji")
            }
        };
        // Once: GitLab refuses a second identical award anyway.
        self.gl
            .call_once(Method::POST, &path, Some(&json!({"name": "eyes"})))
            .await?;
        Ok(())
    }

    async fn can_write(&self, repo: &str, _user: &str, user_id: i64) -> Result<bool, ForgeError> {
        Ok(self.gl.can_write(repo, user_id).await?)
    }

    async fn change_head(&self, repo: &str, number: u64) -> Result<PrHead, ForgeError> {
        let mr = self
            .gl
            .call(
                Method::GET,
                &format!("/projects/{}/merge_requests/{number}", project_id(repo)),
                None,
            )
            .await?
            .body;
        let same = mr["source_project_id"] == mr["target_project_id"];
        Ok(PrHead {
            repo: Some(if same {
                repo.to_owned()
            } else {
                format!("another project (#{})", mr["source_project_id"])
            }),
            branch: mr["source_branch"].as_str().unwrap_or_default().to_owned(),
        })
    }

    async fn conversation(
        &self,
        repo: &str,
        number: u64,
    ) -> Result<Vec<(String, String)>, ForgeError> {
        let r = self
            .gl
            .call(
                Method::GET,
                &format!(
                    "/projects/{}/merge_requests/{number}/notes?per_page=100&sort=desc&order_by=created_at",
                    project_id(repo)
                ),
                None,
            )
            .await?;
        // Newest first from GitLab (the newest matter most in a long thread), oldest first out.
        Ok(r.body
            .as_array()
            .into_iter()
            .flatten()
            .rev()
            .filter(|n| n["system"] != json!(true))
            .map(|n| {
                let who = n["author"]["username"]
                    .as_str()
                    .unwrap_or("someone")
                    .to_owned();
                let body = n["body"].as_str().unwrap_or_default();
                let text = match (
                    n["position"]["new_path"].as_str(),
                    n["position"]["new_line"].as_u64(),
                ) {
                    (Some(file), Some(line)) => format!("(on {file}:{line}) {body}"),
                    (Some(file), None) => format!("(on {file}) {body}"),
                    _ => body.to_owned(),
                };
                (who, text)
            })
            .collect())
    }
}
