//! Linear's GraphQL API with maur's key: comments, attachments, agent activities. 5xx and
//! rate limits are retried with backoff; every call counts against the current task.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::settings::LinearSettings;
use crate::forge::count_api_call;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinearError {
    #[error("Linear is unavailable: {0}")]
    Transient(String),
    #[error("Linear refused the request: {0}")]
    Rejected(String),
    #[error("Linear misconfigured: {0}")]
    Config(String),
}

const ATTEMPTS: u32 = 4;

pub struct Linear {
    http: reqwest::Client,
    url: String,
    key: SecretString,
    pub backoff: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearComment {
    pub id: String,
    pub url: String,
}

impl Linear {
    pub fn new(settings: &LinearSettings) -> Result<Arc<Self>, LinearError> {
        let key = settings
            .api_key
            .clone()
            .ok_or_else(|| LinearError::Config("LINEAR_API_KEY is not set".into()))?;
        // No redirects: the key must only ever go to LINEAR_API_URL.
        let http = crate::forge::http::client(false)
            .map_err(|e| LinearError::Config(format!("building the HTTP client: {e}")))?;
        Ok(Arc::new(Self {
            http,
            url: settings.api_url.clone(),
            key,
            backoff: Duration::from_millis(500),
        }))
    }

    /// Runs one GraphQL operation and returns its `data`. `repeatable: false` for a
    /// mutation that must not happen twice (creating a comment).
    pub async fn run(
        &self,
        query: &str,
        variables: Value,
        repeatable: bool,
    ) -> Result<Value, LinearError> {
        let body = json!({"query": query, "variables": variables});
        let mut attempt = 0;
        loop {
            attempt += 1;
            count_api_call();
            // Linear takes a personal API key as is, an OAuth token as `Bearer <token>`.
            let sent = self
                .http
                .post(&self.url)
                .header("Authorization", self.key.expose_secret())
                .json(&body)
                .send()
                .await;
            let retry = |why: String| async move {
                if attempt < ATTEMPTS {
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                    Ok(())
                } else {
                    Err(LinearError::Transient(why))
                }
            };
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    let unsent = e.is_connect();
                    let why = format!("POST graphql: {}", e.without_url());
                    if repeatable || unsent {
                        retry(why).await?;
                        continue;
                    }
                    return Err(LinearError::Transient(why));
                }
            };
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or_default();
            let message = answer["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let limited = status == StatusCode::TOO_MANY_REQUESTS
                || answer["errors"][0]["extensions"]["code"] == "RATELIMITED";
            if limited || (status.is_server_error() && repeatable) {
                retry(format!("{status}: {message}")).await?;
                continue;
            }
            if status.is_server_error() {
                return Err(LinearError::Transient(format!("{status}: {message}")));
            }
            if !status.is_success() || answer.get("errors").is_some_and(|e| !e.is_null()) {
                return Err(LinearError::Rejected(if message.is_empty() {
                    status.to_string()
                } else {
                    message
                }));
            }
            return Ok(answer["data"].clone());
        }
    }

    pub async fn comment(&self, issue_id: &str, body: &str) -> Result<LinearComment, LinearError> {
        let data = self
            .run(
                "mutation($input: CommentCreateInput!) { commentCreate(input: $input) { success comment { id url } } }",
                json!({"input": {"issueId": issue_id, "body": body}}),
                false,
            )
            .await?;
        let comment = &data["commentCreate"]["comment"];
        Ok(LinearComment {
            id: comment["id"]
                .as_str()
                .ok_or_else(|| {
                    LinearError::Transient("commentCreate answered without an id".into())
                })?
                .to_owned(),
            url: comment["url"].as_str().unwrap_or_default().to_owned(),
        })
    }

    pub async fn edit_comment(&self, id: &str, body: &str) -> Result<(), LinearError> {
        self.run(
            "mutation($id: String!, $input: CommentUpdateInput!) { commentUpdate(id: $id, input: $input) { success } }",
            json!({"id": id, "input": {"body": body}}),
            true,
        )
        .await?;
        Ok(())
    }

    /// maur's comment on the issue carrying `marker`, after a create whose answer was lost.
    pub async fn find_comment(
        &self,
        issue_id: &str,
        marker: &str,
    ) -> Result<Option<LinearComment>, LinearError> {
        let data = self
            .run(
                "query($id: String!) { issue(id: $id) { comments(first: 100) { nodes { id url body } } } }",
                json!({"id": issue_id}),
                true,
            )
            .await?;
        Ok(data["issue"]["comments"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["body"].as_str().is_some_and(|b| b.contains(marker)))
            .and_then(|c| {
                Some(LinearComment {
                    id: c["id"].as_str()?.to_owned(),
                    url: c["url"].as_str().unwrap_or_default().to_owned(),
                })
            }))
    }

    /// An activity in an agent session (`thought`, `action`, `response`, `error`): never
    /// sent twice, so a lost answer is not repeated.
    pub async fn activity(&self, session_id: &str, content: Value) -> Result<(), LinearError> {
        self.run(
            "mutation($input: AgentActivityCreateInput!) { agentActivityCreate(input: $input) { success } }",
            json!({"input": {"agentSessionId": session_id, "content": content}}),
            false,
        )
        .await?;
        Ok(())
    }

    /// Where people can follow the session outside Linear (the task's page).
    pub async fn session_url(&self, session_id: &str, url: &str) -> Result<(), LinearError> {
        self.run(
            "mutation($id: String!, $input: AgentSessionUpdateInput!) { agentSessionUpdate(id: $id, input: $input) { success } }",
            json!({"id": session_id, "input": {"externalUrls": [{"label": "maur task", "url": url}]}}),
            true,
        )
        .await?;
        Ok(())
    }

    /// The URLs attached to an issue (linked pull requests, repositories, anything).
    pub async fn attachments(&self, issue_id: &str) -> Result<Vec<String>, LinearError> {
        let data = self
            .run(
                "query($id: String!) { issue(id: $id) { attachments(first: 50) { nodes { url } } } }",
                json!({"id": issue_id}),
                true,
            )
            .await?;
        Ok(data["issue"]["attachments"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["url"].as_str().map(str::to_owned))
            .collect())
    }

    /// Links the pull request to the issue (Linear shows it under the issue).
    pub async fn attach_link(
        &self,
        issue_id: &str,
        url: &str,
        title: &str,
    ) -> Result<(), LinearError> {
        self.run(
            "mutation($issueId: String!, $url: String!, $title: String) { attachmentLinkURL(issueId: $issueId, url: $url, title: $title) { success } }",
            json!({"issueId": issue_id, "url": url, "title": title}),
            true,
        )
        .await?;
        Ok(())
    }
}
