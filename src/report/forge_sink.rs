//! Progress on a forge issue or pull request: 👀 on what asked, then one comment that every
//! later publish edits.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{ReportSink, SinkError};
use crate::forge::{Forge, ForgeError, ReactTarget, Thread};
use crate::store::reports::Report;
use crate::task::Task;

pub struct ForgeSink {
    pub forge: Arc<dyn Forge>,
}

/// Where a forge task reports: stored as the task's `report_to`.
pub fn report_to(kind: &str, thread: &Thread, react: Option<&ReactTarget>) -> Value {
    json!({"kind": kind, "thread": thread, "react": react})
}

fn sink_error(e: ForgeError) -> SinkError {
    match e {
        ForgeError::Transient(m) => SinkError::Retry(m),
        ForgeError::Fatal(m) => SinkError::Permanent(m),
    }
}

#[async_trait]
impl ReportSink for ForgeSink {
    async fn publish(&self, _task: &Task, report: &Report, body: &str) -> Result<Value, SinkError> {
        let thread: Thread = serde_json::from_value(report.report_to["thread"].clone())
            .map_err(|e| SinkError::Permanent(format!("report target unreadable: {e}")))?;
        let mut state = match &report.state {
            Value::Object(_) => report.state.clone(),
            _ => json!({}),
        };
        if state["reacted"] != json!(true) {
            if let Ok(target) =
                serde_json::from_value::<ReactTarget>(report.report_to["react"].clone())
            {
                match self.forge.react(&thread, &target).await {
                    Ok(()) => {}
                    Err(ForgeError::Transient(m)) => return Err(SinkError::Retry(m)),
                    // The comment was deleted, say: the progress comment matters more.
                    Err(ForgeError::Fatal(m)) => tracing::warn!(error = %m, "reaction refused"),
                }
            }
            state["reacted"] = json!(true);
        }
        let digest = digest(body);
        if let Some(id) = state["comment_id"].as_str().map(str::to_owned) {
            // Events that change nothing visible cost no API call.
            if state["body_sha256"] == json!(digest) {
                return Ok(state);
            }
            match self.forge.edit_comment(&thread, &id, body).await {
                Ok(()) => {
                    state["body_sha256"] = json!(digest);
                    return Ok(state);
                }
                Err(ForgeError::Transient(m)) => return Err(SinkError::Retry(m)),
                Err(ForgeError::Fatal(m)) => {
                    // Deleted by someone: post a new one rather than go silent.
                    tracing::warn!(error = %m, "progress comment cannot be edited; posting a new one");
                }
            }
        }
        let comment = self
            .forge
            .comment(&thread, body)
            .await
            .map_err(sink_error)?;
        state["comment_id"] = json!(comment.id);
        state["comment_url"] = json!(comment.url);
        state["body_sha256"] = json!(digest);
        Ok(state)
    }
}

fn digest(body: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
