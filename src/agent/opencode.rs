//! OpenCode (`MAUR_AGENT=opencode`, the default) with one OpenAI-compatible provider that
//! maur defines. `OPENCODE_CONFIG_CONTENT` merges last, so a repository's own opencode.json
//! cannot point the agent at another LLM endpoint.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::process::{self, Spec};
use super::{Agent, AgentError, AgentEvent, AgentOutcome, AgentRun, Limits, env, sandbox};

pub const PROVIDER: &str = "maur";

pub struct OpenCode {
    /// Variables the operator chose to pass (MAUR_AGENT_ENV).
    pub extra_env: Vec<(String, String)>,
    pub binary: String,
    pub llm_api: String,
    pub llm_token: Option<SecretString>,
    pub model: String,
    /// false sets OPENCODE_DISABLE_PROJECT_CONFIG: no plugins or MCP servers from the repo.
    pub project_config: bool,
    pub limits: Limits,
}

impl OpenCode {
    /// The configuration maur hands OpenCode (it contains the LLM key: never log it).
    pub fn config_content(&self) -> Value {
        let mut options = json!({ "baseURL": self.llm_api });
        if let Some(token) = &self.llm_token {
            options["apiKey"] = json!(token.expose_secret());
        }
        json!({
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": false,
            "share": "disabled",
            "model": format!("{PROVIDER}/{}", self.model),
            "provider": {
                PROVIDER: {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "maur LLM",
                    "options": options,
                    "models": { &self.model: { "name": &self.model } }
                }
            },
            "permission": {
                "edit": "allow",
                "bash": "allow",
                "webfetch": "allow",
                "external_directory": "deny"
            }
        })
    }

    fn env(&self, run: &AgentRun) -> Vec<(String, String)> {
        let mut extra = self.extra_env.clone();
        extra.extend([
            (
                "OPENCODE_CONFIG_CONTENT".to_owned(),
                self.config_content().to_string(),
            ),
            ("OPENCODE_DISABLE_AUTOUPDATE".to_owned(), "1".to_owned()),
            ("OPENCODE_DISABLE_SHARE".to_owned(), "1".to_owned()),
            ("OPENCODE_DISABLE_MODELS_FETCH".to_owned(), "1".to_owned()),
            ("OPENCODE_DISABLE_LSP_DOWNLOAD".to_owned(), "1".to_owned()),
            (
                "OPENCODE_DISABLE_DEFAULT_PLUGINS".to_owned(),
                "1".to_owned(),
            ),
        ]);
        if !self.project_config {
            extra.push(("OPENCODE_DISABLE_PROJECT_CONFIG".to_owned(), "1".to_owned()));
        }
        env::build(
            std::env::var("PATH").ok().as_deref(),
            std::env::var("LANG").ok().as_deref(),
            &run.home,
            &extra,
        )
    }
}

/// What the parser saw over the whole run; decides whether exit 0 was a success.
#[derive(Debug, Default)]
pub struct RunState {
    pub tools_ok: usize,
    pub tools_failed: usize,
    pub last_tool_error: Option<String>,
    pub error: Option<String>,
    pub last_text: Option<String>,
}

impl RunState {
    /// Exit code 0 is not success: an error event, or tool calls that all failed, are.
    pub fn verdict(&self) -> Result<(), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.tools_ok == 0 && self.tools_failed > 0 {
            return Err(format!(
                "every tool call failed; the last: {}",
                self.last_tool_error.as_deref().unwrap_or("unknown error")
            ));
        }
        Ok(())
    }
}

/// Pure: one `opencode run --format json` line to events, updating `state`.
pub fn parse_line(line: &str, state: &mut RunState) -> Vec<AgentEvent> {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return Vec::new(); // not an event (a warning printed by a plugin, say)
    };
    let part = &v["part"];
    match v["type"].as_str().unwrap_or_default() {
        "text" => match part["text"].as_str().map(str::trim) {
            Some(text) if !text.is_empty() => {
                state.last_text = Some(text.to_owned());
                vec![AgentEvent::Text {
                    text: text.to_owned(),
                }]
            }
            _ => Vec::new(),
        },
        "tool_use" => {
            let tool = part["tool"].as_str().unwrap_or("tool").to_owned();
            let st = &part["state"];
            let status = st["status"].as_str().unwrap_or("unknown").to_owned();
            let input = &st["input"];
            let target = ["filePath", "path", "command", "pattern", "url"]
                .iter()
                .find_map(|k| input[*k].as_str())
                .map(str::to_owned);
            match status.as_str() {
                "completed" => state.tools_ok += 1,
                "error" => {
                    state.tools_failed += 1;
                    state.last_tool_error = st["error"].as_str().map(str::to_owned);
                }
                _ => {}
            }
            vec![AgentEvent::ToolUse {
                tool,
                target,
                status,
            }]
        }
        "step_finish" => {
            let tokens = &part["tokens"];
            let n = |v: &Value| v.as_i64().unwrap_or(0);
            let input =
                n(&tokens["input"]) + n(&tokens["cache"]["read"]) + n(&tokens["cache"]["write"]);
            let output = n(&tokens["output"]) + n(&tokens["reasoning"]);
            let cost = part["cost"].as_f64().unwrap_or(0.0);
            if input + output == 0 && cost == 0.0 {
                return Vec::new();
            }
            vec![AgentEvent::Usage {
                input_tokens: input,
                output_tokens: output,
                cost_usd: cost,
            }]
        }
        "error" => {
            let e = &v["error"];
            let message = [&e["data"]["message"], &e["message"], &e["name"], e]
                .iter()
                .find_map(|m| m.as_str())
                .unwrap_or("OpenCode reported an error")
                .to_owned();
            state.error = Some(message.clone());
            vec![AgentEvent::Error { message }]
        }
        _ => Vec::new(),
    }
}

#[async_trait]
impl Agent for OpenCode {
    fn name(&self) -> &'static str {
        "opencode"
    }

    async fn run(
        &self,
        run: &AgentRun,
        events: mpsc::Sender<AgentEvent>,
    ) -> Result<AgentOutcome, AgentError> {
        super::prepare_home(&run.home)?;
        let spec = Spec {
            program: self.binary.clone(),
            args: vec![
                "run".into(),
                "--format".into(),
                "json".into(),
                "--title".into(),
                format!("maur-{}", run.task_id),
                "-m".into(),
                format!("{PROVIDER}/{}", self.model),
            ],
            env: self.env(run),
            cwd: run.workdir.clone(),
            stdin: Some(run.prompt.clone()),
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
        let mut state = RunState::default();
        let mut parse = |line: &str| parse_line(line, &mut state);
        let finished = process::run(spec, &mut parse, &events).await?;
        if !finished.status.success() {
            return Err(AgentError::Failed(
                finished.failure("opencode", state.error.as_deref()),
            ));
        }
        state.verdict().map_err(AgentError::Failed)?;
        Ok(AgentOutcome {
            summary: state.last_text,
            log: finished.log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(lines: &[&str]) -> (Vec<AgentEvent>, RunState) {
        let mut state = RunState::default();
        let events = lines
            .iter()
            .flat_map(|l| parse_line(l, &mut state))
            .collect();
        (events, state)
    }

    #[test]
    fn a_successful_run() {
        let (events, state) = parse_all(&[
            r#"{"type":"step_start","timestamp":1,"sessionID":"ses_1","part":{"type":"step-start"}}"#,
            r#"{"type":"tool_use","timestamp":2,"sessionID":"ses_1","part":{"tool":"write","callID":"c1","state":{"status":"completed","input":{"filePath":"/w/src/lib.rs","content":"x"},"output":""}}}"#,
            r#"{"type":"step_finish","timestamp":3,"sessionID":"ses_1","part":{"reason":"tool-calls","cost":0.0012,"tokens":{"input":900,"output":40,"reasoning":10,"cache":{"read":100,"write":0}}}}"#,
            r#"{"type":"text","timestamp":4,"sessionID":"ses_1","part":{"type":"text","text":"Fixed the off-by-one."}}"#,
            "not json at all",
        ]);
        assert_eq!(
            events,
            vec![
                AgentEvent::ToolUse {
                    tool: "write".into(),
                    target: Some("/w/src/lib.rs".into()),
                    status: "completed".into()
                },
                AgentEvent::Usage {
                    input_tokens: 1000,
                    output_tokens: 50,
                    cost_usd: 0.0012
                },
                AgentEvent::Text {
                    text: "Fixed the off-by-one.".into()
                },
            ]
        );
        assert!(state.verdict().is_ok());
        assert_eq!(state.last_text.as_deref(), Some("Fixed the off-by-one."));
    }

    #[test]
    fn only_failed_tools_or_an_error_event_fail_the_run() {
        let (_, state) = parse_all(&[
            r#"{"type":"tool_use","part":{"tool":"edit","state":{"status":"error","input":{"filePath":"a"},"error":"oldString not found"}}}"#,
        ]);
        assert_eq!(
            state.verdict().unwrap_err(),
            "every tool call failed; the last: oldString not found"
        );
        let (_, state) = parse_all(&[
            r#"{"type":"tool_use","part":{"tool":"edit","state":{"status":"error","error":"x"}}}"#,
            r#"{"type":"tool_use","part":{"tool":"edit","state":{"status":"completed"}}}"#,
        ]);
        assert!(state.verdict().is_ok());
        let (events, state) = parse_all(&[
            r#"{"type":"error","sessionID":"s","error":{"name":"APIError","data":{"message":"model not found"}}}"#,
        ]);
        assert_eq!(state.verdict().unwrap_err(), "model not found");
        assert_eq!(
            events,
            vec![AgentEvent::Error {
                message: "model not found".into()
            }]
        );
    }

    #[test]
    fn the_config_pins_the_provider() {
        let oc = OpenCode {
            extra_env: vec![],
            binary: "opencode".into(),
            llm_api: "http://127.0.0.1:11434/v1".into(),
            llm_token: Some(SecretString::from("llm-key")),
            model: "qwen3.5:4b".into(),
            project_config: false,
            limits: Limits {
                timeout: std::time::Duration::from_secs(60),
                max_log: 1024,
                sandbox: sandbox::Sandbox::None,
            },
        };
        let c = oc.config_content();
        assert_eq!(c["provider"]["maur"]["npm"], "@ai-sdk/openai-compatible");
        assert_eq!(
            c["provider"]["maur"]["options"]["baseURL"],
            "http://127.0.0.1:11434/v1"
        );
        assert_eq!(
            c["provider"]["maur"]["models"]["qwen3.5:4b"]["name"],
            "qwen3.5:4b"
        );
        assert_eq!(c["permission"]["external_directory"], "deny");
        assert_eq!(c["autoupdate"], false);
        assert_eq!(c["share"], "disabled");
    }
}
