//! Progress on a forge issue or pull request: 👀 on what asked, then one comment that every
//! later publish edits.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{ReportSink, SinkError, render};
use crate::forge::{Comment, Forge, ForgeError, ReactTarget, Thread};
use crate::task::Task;

pub struct ForgeSink {
    pub forge: Arc<dyn Forge>,
}

/// Where a forge task reports: stored as the task's `report_to`.
pub fn report_to(kind: &str, thread: &Thread, react: Option<&ReactTarget>) -> Value {
    json!({"kind": kind, "thread": thread, "react": react})
}

pub fn sink_error(e: ForgeError) -> SinkError {
    match e {
        ForgeError::Transient(m) => SinkError::Retry(m),
        ForgeError::Fatal(m) => SinkError::Permanent(m),
    }
}

#[async_trait]
impl ReportSink for ForgeSink {
    async fn publish(
        &self,
        task: &Task,
        _events: &[crate::task::TaskEvent],
        report_to: &Value,
        state: &mut Value,
        body: &str,
    ) -> Result<(), SinkError> {
        let thread: Thread = serde_json::from_value(report_to["thread"].clone())
            .map_err(|e| SinkError::Permanent(format!("report target unreadable: {e}")))?;
        if state["reacted"] != json!(true) {
            if let Ok(target) = serde_json::from_value::<ReactTarget>(report_to["react"].clone()) {
                match self.forge.react(&thread, &target).await {
                    Ok(()) => {}
                    Err(ForgeError::Transient(m)) => return Err(SinkError::Retry(m)),
                    // The comment was deleted, say: the progress comment matters more.
                    Err(ForgeError::Fatal(m)) => tracing::warn!(error = %m, "reaction refused"),
                }
            }
            state["reacted"] = json!(true);
        }
        let comments = ThreadComments {
            forge: self.forge.as_ref(),
            thread: &thread,
        };
        upkeep(&comments, &render::marker(task), state, body).await
    }
}

/// Where one progress comment lives: create, edit and find it.
#[async_trait]
pub trait Comments: Send + Sync {
    async fn create(&self, body: &str) -> Result<Comment, ForgeError>;
    async fn edit(&self, id: &str, body: &str) -> Result<(), ForgeError>;
    async fn find(&self, marker: &str) -> Result<Option<Comment>, ForgeError>;
}

struct ThreadComments<'a> {
    forge: &'a dyn Forge,
    thread: &'a Thread,
}

#[async_trait]
impl Comments for ThreadComments<'_> {
    async fn create(&self, body: &str) -> Result<Comment, ForgeError> {
        self.forge.comment(self.thread, body).await
    }

    async fn edit(&self, id: &str, body: &str) -> Result<(), ForgeError> {
        self.forge.edit_comment(self.thread, id, body).await
    }

    async fn find(&self, marker: &str) -> Result<Option<Comment>, ForgeError> {
        self.forge.find_comment(self.thread, marker).await
    }
}

/// Keeps one comment showing `body`: edits the one in `state`, adopts one a lost answer
/// left behind (found by `marker`), or posts it; unchanged text costs no call.
pub async fn upkeep(
    comments: &dyn Comments,
    marker: &str,
    state: &mut Value,
    body: &str,
) -> Result<(), SinkError> {
    let digest = crate::hex(&sha256(body));
    if let Some(id) = state["comment_id"].as_str().map(str::to_owned) {
        // Events that change nothing visible cost no API call.
        if state["body_sha256"] == json!(digest) {
            return Ok(());
        }
        match comments.edit(&id, body).await {
            Ok(()) => {
                state["body_sha256"] = json!(digest);
                return Ok(());
            }
            Err(ForgeError::Transient(m)) => return Err(SinkError::Retry(m)),
            Err(ForgeError::Fatal(m)) => {
                // Deleted by someone: post a new one rather than go silent.
                tracing::warn!(error = %m, "progress comment cannot be edited; posting a new one");
                state["comment_id"] = Value::Null;
            }
        }
    } else if state["creating"] == json!(true) {
        // An earlier create failed without an answer: it may have been posted anyway.
        // Adopt it instead of posting a second one.
        if let Some(found) = comments.find(marker).await.map_err(sink_error)? {
            state["comment_id"] = json!(found.id);
            state["comment_url"] = json!(found.url);
            state["creating"] = Value::Null;
            comments.edit(&found.id, body).await.map_err(sink_error)?;
            state["body_sha256"] = json!(digest);
            return Ok(());
        }
    }
    state["creating"] = json!(true);
    let comment = comments.create(body).await.map_err(sink_error)?;
    state["creating"] = Value::Null;
    state["comment_id"] = json!(comment.id);
    state["comment_url"] = json!(comment.url);
    state["body_sha256"] = json!(digest);
    Ok(())
}

fn sha256(body: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(body.as_bytes()).into()
}
