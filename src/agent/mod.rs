//! Coding agents: untrusted code driven by untrusted text. Whatever runs, it gets a clean
//! environment, a temporary home, a wall-clock limit and (with bubblewrap) a view of nothing
//! but its checkout. The worker, not the agent, commits and pushes.

pub mod command;
pub mod env;
pub mod log;
pub mod opencode;
pub mod process;
pub mod sandbox;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::mpsc;

/// What an agent reports while it works; the worker appends these to the task's events.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    Text {
        text: String,
    },
    ToolUse {
        tool: String,
        /// The file path or command the tool acted on, when it says.
        target: Option<String>,
        status: String,
    },
    Usage {
        input_tokens: i64,
        output_tokens: i64,
        cost_usd: f64,
    },
    Error {
        message: String,
    },
}

/// One prompt in one checkout.
#[derive(Debug, Clone)]
pub struct AgentRun {
    pub task_id: String,
    pub workdir: PathBuf,
    /// A fresh, empty directory that is the agent's HOME, TMPDIR and XDG base; removed after.
    pub home: PathBuf,
    pub prompt: String,
    /// Read-only paths the agent needs besides its checkout (the mirror objects it borrows).
    pub shared: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AgentOutcome {
    /// The agent's last words, for the commit message and the pull request.
    pub summary: Option<String>,
    /// Its output, head and tail kept within `MAUR_AGENT_MAX_LOG`.
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Start(String),
    #[error("the agent failed: {0}")]
    Failed(String),
    #[error("the agent ran longer than {0:?} (MAUR_AGENT_TIMEOUT) and was stopped")]
    TimedOut(Duration),
}

impl From<process::ProcessError> for AgentError {
    fn from(e: process::ProcessError) -> Self {
        match e {
            process::ProcessError::TimedOut(d) => Self::TimedOut(d),
            process::ProcessError::Spawn { .. } => Self::Start(e.to_string()),
            process::ProcessError::Io(m) => Self::Failed(m),
        }
    }
}

/// Limits and isolation every agent runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    pub timeout: Duration,
    pub max_log: usize,
    pub sandbox: sandbox::Sandbox,
}

#[async_trait]
pub trait Agent: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn run(
        &self,
        run: &AgentRun,
        events: mpsc::Sender<AgentEvent>,
    ) -> Result<AgentOutcome, AgentError>;
}

/// Creates the agent's home directories (the XDG dirs `env::build` points into).
pub fn prepare_home(home: &std::path::Path) -> Result<(), AgentError> {
    for dir in env::HOME_DIRS {
        std::fs::create_dir_all(home.join(dir))
            .map_err(|e| AgentError::Start(format!("creating the agent's home: {e}")))?;
    }
    Ok(())
}

/// The agent `MAUR_AGENT` names, with its settings.
pub fn from_config(c: &crate::config::AgentConfig) -> std::sync::Arc<dyn Agent> {
    match &c.kind {
        crate::config::AgentKind::OpenCode => std::sync::Arc::new(opencode::OpenCode {
            extra_env: c.pass_env.clone(),
            binary: c.opencode_bin.clone(),
            llm_api: c.llm_api.clone(),
            llm_token: c.llm_token.clone(),
            model: c.llm_model.clone(),
            project_config: c.opencode_project_config,
            limits: limits(c),
        }),
        crate::config::AgentKind::Command(template) => command_agent(c, template, "the command"),
    }
}

/// MAUR_CHECK_COMMAND: run like the command agent, with the same environment and limits.
pub fn check_from_config(
    c: &crate::config::AgentConfig,
    command: &str,
) -> std::sync::Arc<dyn Agent> {
    command_agent(c, command, "the check")
}

fn command_agent(
    c: &crate::config::AgentConfig,
    template: &str,
    subject: &'static str,
) -> std::sync::Arc<dyn Agent> {
    // The command agent gets the LLM endpoint too, for tools that speak OpenAI.
    let mut extra_env = c.pass_env.clone();
    extra_env.push(("MAUR_LLM_API".to_owned(), c.llm_api.clone()));
    extra_env.push(("MAUR_LLM_MODEL".to_owned(), c.llm_model.clone()));
    if let Some(token) = &c.llm_token {
        use secrecy::ExposeSecret;
        extra_env.push((
            "MAUR_LLM_TOKEN".to_owned(),
            token.expose_secret().to_owned(),
        ));
    }
    std::sync::Arc::new(command::CommandAgent {
        subject,
        template: template.to_owned(),
        extra_env,
        limits: limits(c),
    })
}

fn limits(c: &crate::config::AgentConfig) -> Limits {
    Limits {
        timeout: c.timeout,
        max_log: c.max_log,
        sandbox: c.sandbox,
    }
}
