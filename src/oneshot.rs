//! `maur run`: one task in the foreground, no server, no database. The fastest way to see
//! what maur does to a repository on your own disk.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::StoreError;
use crate::task::Task;
use crate::trigger::{self, Defaults, ManualRequest};
use crate::worker::pipeline::{Done, Pipeline, PipelineError, Progress, TaskContext};

/// Prints steps and agent actions as they happen, with the elapsed time. Clones share the
/// token totals.
#[derive(Clone)]
pub struct Terminal {
    started: Instant,
    usage: Arc<Mutex<(i64, i64, f64)>>,
    /// On a TTY: the running step, redrawn with a spinner and its elapsed time.
    spinner: Option<Spinning>,
}

/// The step being shown and when it started.
type Spinning = Arc<Mutex<Option<(String, Instant)>>>;

const SPINNER: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

impl Terminal {
    pub fn new() -> Self {
        let tty = std::io::stdout().is_terminal();
        let terminal = Self {
            started: Instant::now(),
            usage: Arc::new(Mutex::new((0, 0, 0.0))),
            spinner: tty.then(|| Arc::new(Mutex::new(None))),
        };
        if let Some(state) = terminal.spinner.clone() {
            tokio::spawn(async move {
                let mut frame = 0usize;
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    let current = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    if let Some((label, since)) = current {
                        frame = (frame + 1) % SPINNER.len();
                        let mut out = std::io::stdout().lock();
                        let _ = write!(
                            out,
                            "\r\x1b[2K{} {label} {}s",
                            SPINNER[frame],
                            since.elapsed().as_secs()
                        );
                        let _ = out.flush();
                    }
                }
            });
        }
        terminal
    }

    fn line(&self, text: &str) {
        let secs = self.started.elapsed().as_secs();
        let stamp = format!("[{:02}:{:02}]", secs / 60, secs % 60);
        let mut out = std::io::stdout().lock();
        if self.spinner.is_some() {
            // Clear the spinner's line first; it redraws below the new one.
            let _ = writeln!(out, "\r\x1b[2K\x1b[2m{stamp}\x1b[0m {text}");
        } else {
            let _ = writeln!(out, "{stamp} {text}");
        }
    }

    /// Which step the spinner shows (`None` hides it).
    fn spin(&self, step: Option<String>) {
        if let Some(state) = &self.spinner {
            *state.lock().unwrap_or_else(|p| p.into_inner()) = step.map(|s| (s, Instant::now()));
        }
    }

    pub fn usage(&self) -> (i64, i64, f64) {
        *self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for Terminal {
    fn default() -> Self {
        Self::new()
    }
}

/// Pure: how one event reads on the terminal (`None`: not worth a line).
pub fn describe(kind: &str, data: &Value) -> Option<String> {
    let s = |k: &str| data.get(k).and_then(Value::as_str);
    match kind {
        "step" => {
            let name = s("label").or(s("step"))?;
            let detail = s("detail").map(|d| format!(": {d}")).unwrap_or_default();
            Some(match s("status").unwrap_or("done") {
                "running" => format!("▸ {name} …"),
                "failed" => format!("✗ {}{detail}", s("step").unwrap_or(name)),
                "skipped" => format!("– {}{detail}", s("step").unwrap_or(name)),
                _ => format!("✓ {}{detail}", s("step").unwrap_or(name)),
            })
        }
        "agent" => match s("type")? {
            "text" => s("text").map(|t| format!("  {}", t.lines().next().unwrap_or_default())),
            "tool_use" => Some(format!(
                "  ⚙ {} {}{}",
                s("tool").unwrap_or("tool"),
                s("target").unwrap_or_default(),
                match s("status") {
                    Some("error") => " (failed)",
                    _ => "",
                }
            )),
            "error" => s("message").map(|m| format!("  ✗ {m}")),
            _ => None,
        },
        _ => None,
    }
}

#[async_trait]
impl Progress for Terminal {
    async fn event(&self, kind: &str, data: Value) -> Result<(), StoreError> {
        if let Some(line) = describe(kind, &data) {
            self.line(&line);
        }
        if kind == "step" {
            let running = data.get("status").and_then(Value::as_str) == Some("running");
            let label = data
                .get("label")
                .or(data.get("step"))
                .and_then(Value::as_str);
            self.spin(running.then(|| label.unwrap_or("working").to_owned()));
        }
        Ok(())
    }

    async fn usage(&self, input: i64, output: i64, cost_usd: f64) -> Result<(), StoreError> {
        let mut u = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        u.0 += input;
        u.1 += output;
        u.2 += cost_usd;
        Ok(())
    }

    async fn log(&self, _text: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What `maur run` was asked to do.
pub struct Request {
    pub repo: String,
    pub branch: Option<String>,
    pub title: Option<String>,
    pub prompt: String,
}

/// Runs one task to the end; `stop` cancels it (Ctrl-C).
pub async fn run(
    config: &Config,
    request: Request,
    terminal: Terminal,
    stop: CancellationToken,
) -> Result<(Task, Done, (i64, i64, f64)), String> {
    let new = trigger::manual_task(
        ManualRequest {
            prompt: request.prompt,
            repo: Some(request.repo),
            repo_branch: request.branch,
            source_id: None,
            title: request.title,
        },
        &Defaults {
            repo: None,
            max_attempts: 1,
        },
    )
    .map_err(|e| e.to_string())?;
    let task = Task::adhoc(&new);
    let pipeline = crate::app::work_pipeline(config).map_err(|e| {
        format!(
            "cannot use MAUR_DATA_DIR={}: {e}",
            config.data_dir.display()
        )
    })?;
    terminal.line(&format!("maur: {} on {}", task.title, task.repo_url));
    let ctx = TaskContext {
        progress: Box::new(terminal.clone()),
        stop: stop.clone(),
    };
    let result = tokio::select! {
        r = pipeline.run(&task, &ctx) => r,
        _ = stop.cancelled() => Err(PipelineError::Fatal("cancelled".into())),
    };
    match result {
        Ok(done) => Ok((task, done, terminal.usage())),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_read_as_lines() {
        assert_eq!(
            describe(
                "step",
                &json!({"step": "checkout", "label": "Check out the repository", "status": "running"})
            ),
            Some("▸ Check out the repository …".into())
        );
        assert_eq!(
            describe(
                "step",
                &json!({"step": "commit", "status": "done", "detail": "1 file changed"})
            ),
            Some("✓ commit: 1 file changed".into())
        );
        assert_eq!(
            describe(
                "agent",
                &json!({"type": "tool_use", "tool": "write", "target": "src/lib.rs", "status": "completed"})
            ),
            Some("  ⚙ write src/lib.rs".into())
        );
        assert_eq!(
            describe("agent", &json!({"type": "text", "text": "Done.\nMore"})),
            Some("  Done.".into())
        );
        assert_eq!(describe("agent", &json!({"type": "usage"})), None);
    }
}
