//! The task as the rest of maur sees it: statuses, outcomes, the stored row and its events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::repo::RepoRef;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// `queued → running → succeeded | failed | cancelled`; a lost lease goes back to `queued`.
    TaskStatus {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

text_enum!(
    /// How a succeeded task ended. `BranchPushed`: a forge without pull requests (local).
    Outcome {
        PrOpened => "pr_opened",
        PrUpdated => "pr_updated",
        NoChanges => "no_changes",
        BranchPushed => "branch_pushed",
    }
);

text_enum!(Source {
    Manual => "manual",
    Exception => "exception",
    Github => "github",
    Gitlab => "gitlab",
    Linear => "linear",
});

/// Everything needed to enqueue; built by pure trigger code, written by `store::tasks::enqueue`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub source: Source,
    pub dedup_key: Option<String>,
    pub title: String,
    pub prompt: String,
    pub repo_given: String,
    pub repo: RepoRef,
    pub repo_branch: Option<String>,
    pub context: serde_json::Value,
    pub max_attempts: i32,
    /// Where the reporter keeps a progress message up to date; `None` for API-only tasks.
    pub report_to: Option<serde_json::Value>,
}

/// A stored task, as the API shows it and the worker runs it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Task {
    pub id: Uuid,
    pub source: String,
    pub title: String,
    #[serde(skip)]
    pub prompt: String,
    #[serde(skip)]
    pub dedup_key: Option<String>,
    pub repo: String,
    pub repo_kind: String,
    pub repo_url: String,
    pub repo_branch: Option<String>,
    pub context: serde_json::Value,
    pub status: String,
    pub outcome: Option<String>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_after: DateTime<Utc>,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub branch: Option<String>,
    pub pr_url: Option<String>,
    pub error: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    #[serde(skip)]
    pub agent_log: Option<String>,
    #[serde(skip)]
    pub last_seq: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Task {
    /// A task that lives only in memory, for `maur run`.
    pub fn adhoc(new: &NewTask) -> Self {
        let now = Utc::now();
        Self {
            id: Uuid::now_v7(),
            source: new.source.as_str().to_owned(),
            title: new.title.clone(),
            prompt: new.prompt.clone(),
            dedup_key: None,
            repo: new.repo_given.clone(),
            repo_kind: new.repo.kind.as_str().to_owned(),
            repo_url: new.repo.url.clone(),
            repo_branch: new.repo_branch.clone(),
            context: new.context.clone(),
            status: TaskStatus::Running.as_str().to_owned(),
            outcome: None,
            attempts: 1,
            max_attempts: new.max_attempts,
            run_after: now,
            locked_by: None,
            locked_until: None,
            cancel_requested: false,
            branch: None,
            pr_url: None,
            error: None,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
            agent_log: None,
            last_seq: 0,
            created_at: now,
            updated_at: now,
            started_at: Some(now),
            finished_at: None,
        }
    }

    pub fn status(&self) -> TaskStatus {
        // The CHECK constraint keeps the column to these values.
        TaskStatus::parse(&self.status).unwrap_or(TaskStatus::Failed)
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TaskEvent {
    pub task_id: Uuid,
    pub seq: i32,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub data: serde_json::Value,
}

impl TaskEvent {
    /// The event that closes a task's stream: written in the same statement as the final status.
    pub fn is_terminal(&self) -> bool {
        TaskStatus::parse(&self.kind).is_some_and(TaskStatus::is_terminal)
    }
}
