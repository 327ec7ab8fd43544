//! The pipeline that does a task: check out, run the agent, commit, push, open the pull
//! request. Each step is an event, so the person who asked can follow along.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::mpsc;

use super::pipeline::{Done, Pipeline, PipelineError, TaskContext};
use crate::agent::{Agent, AgentError, AgentEvent, AgentRun};
use crate::forge::{API_CALLS, Forge, ForgeError, PullRequestSpec};
use crate::repo::RepoRef;
use crate::task::{Outcome, Task};
use crate::workspace::guards::GuardRules;
use crate::workspace::{self, Author, Checkout, Committed, WorkspaceError, Workspaces};

pub struct WorkPipeline {
    pub forges: Vec<Arc<dyn Forge>>,
    pub workspaces: Workspaces,
    pub agent: Arc<dyn Agent>,
    /// MAUR_CHECK_COMMAND, run like an agent (same environment, sandbox and time limit).
    pub check: Option<Arc<dyn Agent>>,
    pub author: Author,
    pub guards: GuardRules,
}

/// A text event longer than this is cut: events are for following along, the log has it all.
const MAX_EVENT_TEXT: usize = 2000;

impl From<ForgeError> for PipelineError {
    fn from(e: ForgeError) -> Self {
        match e {
            ForgeError::Transient(m) => Self::Transient(m),
            ForgeError::Fatal(m) => Self::Fatal(m),
        }
    }
}

impl From<WorkspaceError> for PipelineError {
    fn from(e: WorkspaceError) -> Self {
        match e {
            WorkspaceError::Transient(m) => Self::Transient(m),
            other => Self::Fatal(other.to_string()),
        }
    }
}

/// Removes the checkout and the agent's home however the task ends (also when cancelled and
/// the pipeline's future is dropped).
struct Cleanup {
    workspaces: Workspaces,
    task_id: String,
    home: PathBuf,
    /// Set once no agent or check process can write to the checkout any more: it may then
    /// be kept for the next task of the repository instead of deleted.
    reusable: Option<Checkout>,
}

impl Cleanup {
    /// The normal end: parking or removing a large tree takes a while, so it runs off the
    /// async threads, and is done when the pipeline returns.
    async fn finish(&mut self) {
        let (workspaces, task_id, reusable, home) = (
            self.workspaces.clone(),
            std::mem::take(&mut self.task_id),
            self.reusable.take(),
            std::mem::take(&mut self.home),
        );
        let work = move || {
            let _ = std::fs::remove_dir_all(&home);
            match reusable {
                Some(checkout) => workspaces.recycle(&checkout, &task_id),
                None => workspaces.remove(&task_id),
            }
        };
        if let Err(e) = tokio::task::spawn_blocking(work).await {
            tracing::warn!(error = %e, "cleaning up a checkout failed");
        }
    }
}

/// Cancelled (the pipeline's future dropped): remove at once, never reuse, since an agent
/// or check process may still be exiting.
impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.task_id.is_empty() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.home);
        self.workspaces.remove(&self.task_id);
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WorkspaceError> + Send + 'static,
) -> Result<Result<T, WorkspaceError>, PipelineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PipelineError::Fatal(format!("internal error: {e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WorkspaceError> + Send + 'static,
) -> Result<T, PipelineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PipelineError::Fatal(format!("internal error: {e}")))?
        .map_err(PipelineError::from)
}

/// Runs a git operation with the forge's credentials; if the remote refuses them (revoked
/// early, say), asks the forge for fresh ones and tries once more.
async fn with_credentials<T, F, Op>(
    forge: &dyn Forge,
    repo: &RepoRef,
    make: Op,
) -> Result<T, PipelineError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, WorkspaceError> + Send + 'static,
    Op: Fn(Option<crate::forge::GitCredentials>) -> F,
{
    let creds = forge.git_credentials(repo).await?;
    match run_blocking(make(creds)).await? {
        Err(WorkspaceError::AuthRefused(why)) => {
            tracing::info!(repo = %repo, error = %why, "git refused the credentials; minting fresh ones");
            forge.forget_credentials(repo).await;
            let creds = forge.git_credentials(repo).await?;
            run_blocking(make(creds))
                .await?
                .map_err(PipelineError::from)
        }
        other => other.map_err(PipelineError::from),
    }
}

impl WorkPipeline {
    fn forge_for(&self, repo: &RepoRef) -> Result<Arc<dyn Forge>, PipelineError> {
        self.forges
            .iter()
            .find(|f| f.serves(repo))
            .cloned()
            .ok_or_else(|| {
                PipelineError::Fatal(format!(
                    "no forge is configured for {repo}: local paths and file:// URLs work out of the box; GitHub and GitLab need their settings"
                ))
            })
    }

    /// Runs the agent, turning its events into task events as they arrive.
    async fn run_agent(
        &self,
        task: &Task,
        checkout: &Checkout,
        home: PathBuf,
        ctx: &TaskContext,
    ) -> Result<(crate::agent::AgentOutcome, (i64, i64)), PipelineError> {
        let run = AgentRun {
            task_id: task.id.to_string(),
            workdir: checkout.path.clone(),
            home,
            prompt: prompt_for(task, checkout),
            shared: vec![checkout.objects.clone()],
        };
        let (tx, mut rx) = mpsc::channel::<AgentEvent>(256);
        let agent = self.agent.run(&run, tx);
        let mut usage = (0i64, 0i64);
        let forward = async {
            while let Some(event) = rx.recv().await {
                if let AgentEvent::Usage {
                    input_tokens,
                    output_tokens,
                    cost_usd,
                } = event
                {
                    usage.0 += input_tokens;
                    usage.1 += output_tokens;
                    ctx.add_usage(input_tokens, output_tokens, cost_usd).await?;
                }
                ctx.event("agent", agent_event_data(&event, &self.guards.own_secrets))
                    .await?;
            }
            Ok::<(), crate::store::StoreError>(())
        };
        let (outcome, forwarded) = tokio::join!(agent, forward);
        forwarded?;
        // The failure carries the end of the agent's output, which is shown to people.
        outcome
            .map(|o| (o, usage))
            .map_err(|e| PipelineError::Fatal(redact(&e.to_string(), &self.guards.own_secrets)))
    }

    /// Runs the check in the checkout after the agent; a failure fails the task with the
    /// check's last lines, and nothing is pushed.
    async fn run_check(
        &self,
        check: &dyn Agent,
        task: &Task,
        checkout: &Checkout,
        ctx: &TaskContext,
    ) -> Result<(), PipelineError> {
        ctx.event(
            "step",
            json!({"step": "check", "label": "Run the check", "status": "running"}),
        )
        .await?;
        let run = AgentRun {
            task_id: task.id.to_string(),
            workdir: checkout.path.clone(),
            home: std::env::temp_dir().join(format!("maur-check-{}", task.id)),
            prompt: String::new(),
            shared: vec![checkout.objects.clone()],
        };
        let (tx, mut rx) = mpsc::channel::<AgentEvent>(64);
        let drain = async { while rx.recv().await.is_some() {} };
        let (result, ()) = tokio::join!(check.run(&run, tx), drain);
        let _ = std::fs::remove_dir_all(&run.home);
        match result {
            Ok(_) => {
                ctx.event("step", json!({"step": "check", "status": "done"}))
                    .await?;
                Ok(())
            }
            Err(e) => {
                let detail = match e {
                    AgentError::Failed(why) => why,
                    other => other.to_string(),
                };
                ctx.event(
                    "step",
                    json!({"step": "check", "status": "failed", "detail": detail}),
                )
                .await?;
                Err(PipelineError::Fatal(detail))
            }
        }
    }
}

/// An agent event as stored: long text cut, and maur's own secrets (the LLM key the agent
/// holds, say) replaced, since events are shown to people and reported to forges.
fn agent_event_data(event: &AgentEvent, secrets: &[String]) -> serde_json::Value {
    let mut data = serde_json::to_value(event).unwrap_or_default();
    for field in ["text", "target", "message"] {
        if let Some(value) = data.get_mut(field)
            && let Some(s) = value.as_str()
        {
            let mut clean = redact(s, secrets);
            if clean.len() > MAX_EVENT_TEXT {
                clean = format!(
                    "{}…",
                    clean.chars().take(MAX_EVENT_TEXT).collect::<String>()
                );
            }
            *value = json!(clean);
        }
    }
    data
}

fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 8)
        .fold(text.to_owned(), |t, s| t.replace(s.as_str(), "[redacted]"))
}

/// The agent's instructions: the task's prompt plus how maur works with it.
pub fn prompt_for(task: &Task, checkout: &Checkout) -> String {
    format!(
        "{}\n\n---\nYou are working in a git checkout of {} on branch `{}` (based on `{}`). \
         Make the change in the files here and stop; do not commit, push or open pull requests: \
         maur reviews, commits and pushes your change. Finish with a short summary of what you changed and why.\n",
        task.prompt.trim_end(),
        task.repo_url,
        checkout.branch,
        checkout.base_branch
    )
}

fn commit_message(task: &Task, summary: Option<&str>) -> String {
    let mut message = format!("maur: {}\n", task.title);
    if let Some(summary) = summary.map(str::trim).filter(|s| !s.is_empty()) {
        message.push('\n');
        message.push_str(summary);
        message.push('\n');
    }
    message.push_str(&format!("\nTask: {}\n", task.id));
    // The person who asked shares the credit (and shows up on the forge's commit view).
    let asked = &task.context["requested_by"];
    if let (Some(name), Some(email)) = (asked["name"].as_str(), asked["email"].as_str()) {
        let clean = |s: &str| s.replace(['<', '>', '\n', '\r'], "");
        message.push_str(&format!(
            "Co-authored-by: {} <{}>\n",
            clean(name),
            clean(email)
        ));
    }
    message
}

/// `@name` becomes `@\u{200b}name`: it reads the same and notifies nobody.
fn quiet_mentions(text: &str) -> String {
    text.replace('@', "@\u{200b}")
}

/// The pull request's description: what changed, why, and what it cost.
fn pull_request_body(
    closing: &str,
    task: &Task,
    summary: Option<&str>,
    committed: &Committed,
    checked: Option<bool>,
    usage: (i64, i64),
) -> String {
    let mut body = String::new();
    if let Some(n) = task.context["issue_number"].as_u64() {
        body.push_str(&format!("{closing} #{n}\n\n"));
    }
    // Linear links a pull request that names its issue.
    if let Some(id) = task.context["linear"]["identifier"].as_str() {
        body.push_str(&format!("Linear: {id}\n\n"));
    }
    // The summary is the agent's text, which an issue can steer: it may not ping people.
    let summary = summary.map(str::trim).filter(|s| !s.is_empty());
    body.push_str(&summary.map_or_else(|| "Changes made by maur.".to_owned(), quiet_mentions));
    body.push_str(&format!(
        "\n\n**Files changed** ({}):\n",
        committed.diffstat()
    ));
    for path in committed.paths.iter().take(50) {
        body.push_str(&format!("- `{}`\n", path.replace('`', "'")));
    }
    if committed.paths.len() > 50 {
        body.push_str(&format!("- … and {} more\n", committed.paths.len() - 50));
    }
    match checked {
        Some(true) => body.push_str("\n**Checks**: passed (`MAUR_CHECK_COMMAND`)\n"),
        Some(false) => {}
        None => body.push_str("\n**Checks**: none configured\n"),
    }
    if usage.0 + usage.1 > 0 {
        body.push_str(&format!(
            "\n<sub>{} tokens in, {} out · task `{}`</sub>\n",
            usage.0, usage.1, task.id
        ));
    } else {
        body.push_str(&format!("\n<sub>task `{}`</sub>\n", task.id));
    }
    body
}

#[async_trait]
impl Pipeline for WorkPipeline {
    async fn run(&self, task: &Task, ctx: &TaskContext) -> Result<Done, PipelineError> {
        // Every forge call of this task counts here, and the count becomes an event.
        let calls = Arc::new(AtomicU32::new(0));
        // Per attempt: an old attempt winding down must not share (or delete) the new one's.
        let task_id = format!("{}-{}", task.id, task.attempts);
        let mut cleanup = Cleanup {
            workspaces: self.workspaces.clone(),
            home: std::env::temp_dir().join(format!("maur-home-{task_id}")),
            task_id,
            reusable: None,
        };
        let result = API_CALLS
            .scope(calls.clone(), self.steps(task, ctx, &mut cleanup))
            .await;
        cleanup.finish().await;
        let calls = calls.load(Ordering::Relaxed);
        if calls > 0
            && let Err(e) = ctx.event("api_calls", json!({"calls": calls})).await
        {
            // A bookkeeping event must not turn the task's result into an error.
            tracing::warn!(task = %task.id, error = %e, "could not record the API call count");
        }
        result
    }
}

impl WorkPipeline {
    async fn steps(
        &self,
        task: &Task,
        ctx: &TaskContext,
        cleanup: &mut Cleanup,
    ) -> Result<Done, PipelineError> {
        let repo =
            RepoRef::parse(&task.repo_url).map_err(|e| PipelineError::Fatal(e.to_string()))?;
        let forge = self.forge_for(&repo)?;
        let url = forge.clone_url(&repo)?;
        // A follow-up (a new request on maur's own pull request) continues that branch and
        // pushes on top of it, never forced; otherwise a new branch from the base.
        let follow_up = task.context.get("work_branch").and_then(|b| b.as_str());
        let (base, branch) = match follow_up {
            Some(b) => (Some(b.to_owned()), b.to_owned()),
            None => (task.repo_branch.clone(), format!("maur/{}", task.id)),
        };
        let (task_id, home) = (cleanup.task_id.clone(), cleanup.home.clone());

        ctx.event(
            "step",
            json!({"step": "checkout", "label": "Check out the repository", "status": "running"}),
        )
        .await?;
        let checkout = with_credentials(forge.as_ref(), &repo, |creds| {
            let (ws, url, base, branch, id) = (
                self.workspaces.clone(),
                url.clone(),
                base.clone(),
                branch.clone(),
                task_id.clone(),
            );
            move || ws.prepare(&url, creds.as_ref(), &id, base.as_deref(), &branch)
        })
        .await?;
        let base_sha = checkout.base_commit.to_string();
        ctx.event("step", json!({
            "step": "checkout", "status": "done",
            "detail": format!("{} at {}", checkout.base_branch, &base_sha[..base_sha.len().min(7)])
        })).await?;

        ctx.event("step", json!({"step": "agent", "label": format!("Run {}", self.agent.name()), "status": "running"})).await?;
        let outcome = self.run_agent(task, &checkout, home, ctx).await;
        if let Ok((o, _)) = &outcome {
            ctx.progress
                .log(&redact(&o.log, &self.guards.own_secrets))
                .await?;
        }
        let (outcome, usage) = match outcome {
            Ok(o) => o,
            Err(e) => {
                ctx.event(
                    "step",
                    json!({"step": "agent", "status": "failed", "detail": e.to_string()}),
                )
                .await?;
                return Err(e);
            }
        };
        ctx.event("step", json!({"step": "agent", "status": "done"}))
            .await?;

        if let Some(check) = &self.check {
            self.run_check(check.as_ref(), task, &checkout, ctx).await?;
        }

        // The agent and the check have exited: nothing writes to the checkout any more.
        cleanup.reusable = Some(checkout.clone());
        ctx.event(
            "step",
            json!({"step": "commit", "label": "Commit the change", "status": "running"}),
        )
        .await?;
        let message = commit_message(task, outcome.summary.as_deref());
        let author = match forge.commit_author(&repo).await? {
            Some(bot) => bot,
            None => Author {
                name: self.author.name.clone(),
                email: self.author.email.clone(),
            },
        };
        let committed = {
            let (co, rules) = (checkout.clone(), self.guards.clone());
            blocking(move || workspace::commit_all(&co, &message, &author, &rules)).await
        };
        let committed = match committed {
            Ok(Some(c)) => c,
            Ok(None) => {
                ctx.event("step", json!({"step": "commit", "status": "skipped", "detail": "the agent changed nothing"})).await?;
                return Ok(Done {
                    outcome: Outcome::NoChanges,
                    branch: None,
                    pr_url: None,
                    summary: outcome.summary,
                });
            }
            Err(e) => {
                ctx.event(
                    "step",
                    json!({"step": "commit", "status": "failed", "detail": e.to_string()}),
                )
                .await?;
                return Err(e);
            }
        };
        ctx.event(
            "step",
            json!({"step": "commit", "status": "done", "detail": committed.diffstat()}),
        )
        .await?;

        ctx.event(
            "step",
            json!({"step": "push", "label": format!("Push `{branch}`"), "status": "running"}),
        )
        .await?;
        // Fresh credentials at the moment of use: a long agent run outlives short tokens.
        let mode = if follow_up.is_some() {
            workspace::PushMode::FastForward
        } else {
            workspace::PushMode::ReplaceOwn
        };
        with_credentials(forge.as_ref(), &repo, |creds| {
            let (co, url) = (checkout.clone(), url.clone());
            move || workspace::push(&co, &url, creds.as_ref(), mode)
        })
        .await?;
        ctx.event("step", json!({"step": "push", "status": "done"}))
            .await?;

        let body = pull_request_body(
            forge.closing_keyword(),
            task,
            outcome.summary.as_deref(),
            &committed,
            self.check.is_some().then_some(true),
            usage,
        );
        let pr = forge
            .open_pull_request(&PullRequestSpec {
                repo: &repo,
                head: &branch,
                base: &checkout.base_branch,
                title: &task.title,
                body: &body,
            })
            .await?;
        Ok(match pr {
            Some(pr) => {
                ctx.event("step", json!({"step": "pull_request", "label": "Open the pull request", "status": "done", "detail": pr.url})).await?;
                Done {
                    outcome: if pr.created {
                        Outcome::PrOpened
                    } else {
                        Outcome::PrUpdated
                    },
                    branch: Some(branch),
                    pr_url: Some(pr.url),
                    summary: outcome.summary,
                }
            }
            None => Done {
                outcome: Outcome::BranchPushed,
                branch: Some(branch),
                pr_url: None,
                summary: Some(format!(
                    "{}{}",
                    committed.diffstat(),
                    outcome
                        .summary
                        .map(|s| format!("\n{s}"))
                        .unwrap_or_default()
                )),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_never_carry_maurs_secrets() {
        let secrets = vec!["llm-key-0123456789".to_owned()];
        let event = AgentEvent::Text {
            text: "my key is llm-key-0123456789, ok".into(),
        };
        assert_eq!(
            agent_event_data(&event, &secrets)["text"],
            "my key is [redacted], ok"
        );
        let long = AgentEvent::Text {
            text: "x".repeat(MAX_EVENT_TEXT + 10),
        };
        let data = agent_event_data(&long, &secrets);
        assert_eq!(
            data["text"].as_str().unwrap().chars().count(),
            MAX_EVENT_TEXT + 1
        );
    }
}
