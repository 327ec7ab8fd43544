//! Any command as the agent (`MAUR_AGENT=command`): Claude Code, Codex, Aider or a team's
//! own script. `MAUR_AGENT_COMMAND` is a shell template; `{prompt_file}` and `{workdir}` are
//! replaced by quoted paths. Each stdout line becomes a text event; exit 0 is success.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::process::{self, Spec};
use super::{Agent, AgentError, AgentEvent, AgentOutcome, AgentRun, Limits, env, sandbox};

pub struct CommandAgent {
    /// How failures name it: "the command" (MAUR_AGENT_COMMAND), "the check" (MAUR_CHECK_COMMAND).
    pub subject: &'static str,
    pub template: String,
    pub extra_env: Vec<(String, String)>,
    pub limits: Limits,
}

/// Single-quotes `s` for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

pub fn render_command(template: &str, prompt_file: &str, workdir: &str) -> String {
    template
        .replace("{prompt_file}", &shell_quote(prompt_file))
        .replace("{workdir}", &shell_quote(workdir))
}

#[async_trait]
impl Agent for CommandAgent {
    fn name(&self) -> &'static str {
        "command"
    }

    async fn run(
        &self,
        run: &AgentRun,
        events: mpsc::Sender<AgentEvent>,
    ) -> Result<AgentOutcome, AgentError> {
        super::prepare_home(&run.home)?;
        // In the home, not the checkout: it must not end up in the commit.
        let prompt_file = run.home.join("tmp").join("prompt.md");
        std::fs::write(&prompt_file, &run.prompt)
            .map_err(|e| AgentError::Start(format!("writing the prompt file: {e}")))?;
        let script = render_command(
            &self.template,
            &prompt_file.to_string_lossy(),
            &run.workdir.to_string_lossy(),
        );
        let spec = Spec {
            program: "sh".into(),
            args: vec!["-c".into(), script],
            env: env::build(
                std::env::var("PATH").ok().as_deref(),
                std::env::var("LANG").ok().as_deref(),
                &run.home,
                &self.extra_env,
            ),
            cwd: run.workdir.clone(),
            stdin: None,
            timeout: self.limits.timeout,
            max_log: self.limits.max_log,
        };
        let spec = sandbox::wrap(
            spec,
            self.limits.sandbox,
            &run.workdir,
            &run.home,
            &run.shared,
        );
        let mut last = None;
        let mut parse = |line: &str| {
            if line.trim().is_empty() {
                return Vec::new();
            }
            last = Some(line.to_owned());
            vec![AgentEvent::Text {
                text: line.to_owned(),
            }]
        };
        let finished = process::run(spec, &mut parse, &events).await?;
        if !finished.status.success() {
            return Err(AgentError::Failed(finished.failure(self.subject, None)));
        }
        Ok(AgentOutcome {
            summary: last,
            log: finished.log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_quoted() {
        assert_eq!(
            render_command(
                "aider --message-file {prompt_file} {workdir}",
                "/tmp/p.md",
                "/w/it's"
            ),
            "aider --message-file '/tmp/p.md' '/w/it'\\''s'"
        );
    }
}
