//! Progress on a Linear issue: one comment kept up to date (the same text as on a forge),
//! and the pull request attached to the issue once there is one.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::{Linear, LinearError};
use crate::forge::{Comment, ForgeError};
use crate::report::forge_sink::{Comments, upkeep};
use crate::report::{ReportSink, SinkError, render};
use crate::task::{Task, TaskStatus};

pub struct LinearSink {
    pub linear: Arc<Linear>,
}

impl From<LinearError> for ForgeError {
    fn from(e: LinearError) -> Self {
        match e {
            LinearError::Transient(_) => Self::Transient(e.to_string()),
            _ => Self::Fatal(e.to_string()),
        }
    }
}

struct IssueComments<'a> {
    linear: &'a Linear,
    issue: &'a str,
}

#[async_trait]
impl Comments for IssueComments<'_> {
    async fn create(&self, body: &str) -> Result<Comment, ForgeError> {
        let c = self.linear.comment(self.issue, body).await?;
        Ok(Comment {
            id: c.id,
            url: c.url,
        })
    }

    async fn edit(&self, id: &str, body: &str) -> Result<(), ForgeError> {
        Ok(self.linear.edit_comment(id, body).await?)
    }

    async fn find(&self, marker: &str) -> Result<Option<Comment>, ForgeError> {
        Ok(self
            .linear
            .find_comment(self.issue, marker)
            .await?
            .map(|c| Comment {
                id: c.id,
                url: c.url,
            }))
    }
}

/// Where a Linear task reports: stored as its `report_to`.
pub fn report_to(issue_id: &str) -> Value {
    json!({"kind": "linear", "issue_id": issue_id})
}

#[async_trait]
impl ReportSink for LinearSink {
    async fn publish(
        &self,
        task: &Task,
        report_to: &Value,
        state: &mut Value,
        body: &str,
    ) -> Result<(), SinkError> {
        let issue = report_to["issue_id"]
            .as_str()
            .ok_or_else(|| SinkError::Permanent("report target has no Linear issue id".into()))?;
        let comments = IssueComments {
            linear: &self.linear,
            issue,
        };
        upkeep(&comments, &render::marker(task), state, body).await?;
        if task.status() == TaskStatus::Succeeded
            && let Some(url) = task.pr_url.as_deref()
            && state["attached"] != json!(true)
        {
            self.linear
                .attach_link(issue, url, &format!("maur: {}", task.title))
                .await
                .map_err(|e| match ForgeError::from(e) {
                    ForgeError::Transient(m) => SinkError::Retry(m),
                    ForgeError::Fatal(m) => SinkError::Permanent(m),
                })?;
            state["attached"] = json!(true);
        }
        Ok(())
    }
}
