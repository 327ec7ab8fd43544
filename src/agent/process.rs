//! Running an agent as a child process in its own process group, so the whole tree it starts
//! dies with it: on timeout, when the task is cancelled (the future is dropped), and when the
//! agent exits leaving background children behind.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::AgentEvent;
use super::log::CappedLog;

/// A single line longer than this is dropped (and noted in the log), not buffered.
const MAX_LINE: usize = 1 << 20;

/// How long output is still read after the agent exits.
const DRAIN: Duration = Duration::from_secs(2);

async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

enum Line {
    Text(String),
    TooLong,
}

/// Splits output into lines, skipping (not failing on) lines over `MAX_LINE`. Cancel-safe:
/// what was read stays in `buf` if `next_line` is dropped mid-line.
struct LineReader<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
    too_long: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R) -> Self {
        Self {
            reader: BufReader::new(inner),
            buf: Vec::new(),
            too_long: false,
        }
    }

    async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                if self.buf.is_empty() && !self.too_long {
                    return Ok(None);
                }
                return Ok(Some(self.take()));
            }
            let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            if !self.too_long {
                if self.buf.len() + chunk.len() > MAX_LINE {
                    self.too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            self.reader.consume(used);
            if done {
                return Ok(Some(self.take()));
            }
        }
    }

    fn take(&mut self) -> Line {
        let line = if self.too_long {
            Line::TooLong
        } else {
            Line::Text(String::from_utf8_lossy(&self.buf).into_owned())
        };
        self.buf.clear();
        self.too_long = false;
        line
    }
}

pub struct Spec {
    pub program: String,
    pub args: Vec<String>,
    /// The complete environment; nothing is inherited.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Written to stdin, which is then closed (an open stdin blocks some agents forever).
    pub stdin: Option<String>,
    pub timeout: Duration,
    pub max_log: usize,
}

pub struct Finished {
    pub status: ExitStatus,
    pub log: String,
}

impl Finished {
    /// "`who` exited with code N: <last lines of output>" for a failed run.
    pub fn failure(&self, who: &str, why: Option<&str>) -> String {
        let code = self
            .status
            .code()
            .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
        let tail = match why {
            Some(why) => why.to_owned(),
            None => {
                let lines: Vec<&str> = self.log.lines().rev().take(5).collect();
                lines.into_iter().rev().collect::<Vec<_>>().join("\n")
            }
        };
        format!("{who} exited with {code}: {tail}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("the agent ran longer than {0:?} (MAUR_AGENT_TIMEOUT) and was stopped")]
    TimedOut(Duration),
    #[error("reading the agent's output failed: {0}")]
    Io(String),
}

/// Kills the process group when dropped, whatever happened before.
struct Group(Option<i32>);

impl Group {
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) with a negative pid signals the process group we created for
            // the child (process_group(0) makes its pid the group id); no memory is touched.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `spec`, turning each stdout line into events with `parse` and sending them on
/// `events`. Stdout and stderr both go to the capped log.
pub async fn run(
    spec: Spec,
    parse: &mut (dyn FnMut(&str) -> Vec<AgentEvent> + Send),
    events: &mpsc::Sender<AgentEvent>,
) -> Result<Finished, ProcessError> {
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| ProcessError::Spawn {
        program: spec.program.clone(),
        reason: e.to_string(),
    })?;
    let group = Group(child.id().and_then(|id| i32::try_from(id).ok()));

    if let (Some(input), Some(mut stdin)) = (spec.stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = stdin.write_all(input.as_bytes()).await;
            // Dropping closes it.
        });
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let max_log = spec.max_log;

    let work = async {
        let stderr_task = tokio::spawn(async move {
            let mut log = CappedLog::new(max_log / 4);
            if let Some(mut err) = stderr {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    log.push(&buf[..n]);
                }
            }
            log.render()
        });
        let mut log = CappedLog::new(max_log);
        let mut status = None;
        if let Some(out) = stdout {
            let mut lines = LineReader::new(out);
            let mut drain_until: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    line = lines.next_line() => match line {
                        Ok(Some(Line::Text(line))) => {
                            log.push_line(&line);
                            for event in parse(&line) {
                                let _ = events.send(event).await;
                            }
                        }
                        Ok(Some(Line::TooLong)) => log.push_line("[a line over 1 MiB was dropped]"),
                        Ok(None) => break,
                        Err(e) => return Err(ProcessError::Io(e.to_string())),
                    },
                    s = child.wait(), if status.is_none() => {
                        status = Some(s.map_err(|e| ProcessError::Io(e.to_string()))?);
                        // The agent is done; whatever it left running is not.
                        group.kill();
                        // Read what is still buffered, but not forever: something that
                        // escaped the group may hold stdout open.
                        drain_until = Some(tokio::time::Instant::now() + DRAIN);
                    }
                    _ = sleep_until_some(drain_until) => break,
                }
            }
        }
        let status = match status {
            Some(s) => s,
            None => child
                .wait()
                .await
                .map_err(|e| ProcessError::Io(e.to_string()))?,
        };
        group.kill();
        let stderr_log = stderr_task.await.unwrap_or_default();
        if !stderr_log.is_empty() {
            log.push_line("--- stderr ---");
            log.push(stderr_log.as_bytes());
        }
        Ok(Finished {
            status,
            log: log.render(),
        })
    };
    match tokio::time::timeout(spec.timeout, work).await {
        Ok(result) => result,
        Err(_) => {
            group.kill();
            Err(ProcessError::TimedOut(spec.timeout))
        }
    }
}
