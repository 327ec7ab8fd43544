//! Progress on a Linear issue: one comment kept up to date (the same text as on a forge),
//! and the pull request attached to the issue once there is one.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::{Linear, LinearError};
use crate::forge::{Comment, ForgeError};
use crate::report::forge_sink::{Comments, upkeep};
use crate::report::{ReportSink, SinkError, render};
use crate::task::{Task, TaskEvent, TaskStatus};

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

/// Where a Linear task reports: stored as its `report_to`. With a session, progress goes
/// to the agent session as activities instead of a comment.
pub fn report_to(issue_id: &str, session_id: Option<&str>) -> Value {
    json!({"kind": "linear", "issue_id": issue_id, "session_id": session_id})
}

fn retry_or_stop(e: LinearError) -> SinkError {
    match ForgeError::from(e) {
        ForgeError::Transient(m) => SinkError::Retry(m),
        ForgeError::Fatal(m) => SinkError::Permanent(m),
    }
}

impl LinearSink {
    /// Agent sessions: a `thought` at once, an `action` per finished step, and a final
    /// `response` (or `error`). Activities cannot be edited, so each is posted once.
    async fn session(
        &self,
        task: &Task,
        events: &[TaskEvent],
        session: &str,
        state: &mut Value,
    ) -> Result<(), SinkError> {
        if state["acknowledged"] != json!(true) {
            let thought = format!(
                "On it: queued as task `{}`. Each step will show up here.",
                task.id
            );
            self.linear
                .activity(session, json!({"type": "thought", "body": thought}))
                .await
                .map_err(retry_or_stop)?;
            state["acknowledged"] = json!(true);
        }
        let mut labels: Vec<(String, String)> = Vec::new();
        let mut finished: Vec<(String, String, String)> = Vec::new();
        for e in events.iter().filter(|e| e.kind == "step") {
            let field = |k: &str| e.data[k].as_str().unwrap_or_default().to_owned();
            let name = field("step");
            if let Some(label) = e.data["label"].as_str() {
                labels.push((name.clone(), label.to_owned()));
            }
            let status = field("status");
            if status != "running" {
                let label = labels
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == name)
                    .map_or(name.clone(), |(_, l)| l.clone());
                finished.push((
                    label,
                    field("detail"),
                    if status.is_empty() {
                        "done".into()
                    } else {
                        status
                    },
                ));
            }
        }
        let reported = state["steps_reported"].as_u64().unwrap_or(0) as usize;
        for (label, detail, status) in finished.iter().skip(reported) {
            self.linear
                .activity(
                    session,
                    json!({"type": "action", "action": render::one_line(label), "parameter": render::one_line(detail), "result": status}),
                )
                .await
                .map_err(retry_or_stop)?;
            state["steps_reported"] = json!(state["steps_reported"].as_u64().unwrap_or(0) + 1);
        }
        if task.status().is_terminal() && state["answered"] != json!(true) {
            let summary = events
                .iter()
                .rev()
                .find(|e| e.kind == "succeeded")
                .and_then(|e| e.data["summary"].as_str())
                .map(|s| format!("\n\n{}", s.trim()))
                .unwrap_or_default();
            let (kind, body) = match task.status() {
                TaskStatus::Succeeded => match (&task.pr_url, &task.branch) {
                    (Some(url), _) => ("response", format!("Done: {url}{summary}")),
                    (None, Some(branch)) if task.outcome.as_deref() != Some("no_changes") => (
                        "response",
                        format!("Done: pushed branch `{branch}`{summary}"),
                    ),
                    _ => ("response", format!("No changes were needed.{summary}")),
                },
                TaskStatus::Failed => (
                    "error",
                    format!(
                        "Failed: {}",
                        task.error.as_deref().unwrap_or("unknown error")
                    ),
                ),
                _ => ("response", "Cancelled.".to_owned()),
            };
            self.linear
                .activity(session, json!({"type": kind, "body": body}))
                .await
                .map_err(retry_or_stop)?;
            state["answered"] = json!(true);
        }
        Ok(())
    }
}

#[async_trait]
impl ReportSink for LinearSink {
    async fn publish(
        &self,
        task: &Task,
        _events: &[TaskEvent],
        report_to: &Value,
        state: &mut Value,
        body: &str,
    ) -> Result<(), SinkError> {
        let issue = report_to["issue_id"]
            .as_str()
            .ok_or_else(|| SinkError::Permanent("report target has no Linear issue id".into()))?;
        match report_to["session_id"].as_str() {
            Some(session) => self.session(task, _events, session, state).await?,
            None => {
                let comments = IssueComments {
                    linear: &self.linear,
                    issue,
                };
                upkeep(&comments, &render::marker(task), state, body).await?;
            }
        }
        if task.status() == TaskStatus::Succeeded
            && let Some(url) = task.pr_url.as_deref()
            && state["attached"] != json!(true)
        {
            self.linear
                .attach_link(issue, url, &format!("maur: {}", task.title))
                .await
                .map_err(retry_or_stop)?;
            state["attached"] = json!(true);
        }
        Ok(())
    }
}
