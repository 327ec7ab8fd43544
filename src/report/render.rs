//! The progress message: a pure function of the task, its events and the moment of
//! rendering, so every forge shows the same text and a retry renders exactly what the first
//! attempt would have.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::task::{Task, TaskEvent, TaskStatus};

/// What the message shows besides the task: set once from the configuration.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// The LLM the agent talks to (`MAUR_LLM_MODEL`), when the agent is OpenCode.
    pub model: Option<String>,
    /// Dollars per million tokens (`MAUR_LLM_PRICE_INPUT` / `_OUTPUT`).
    pub price_input: Option<f64>,
    pub price_output: Option<f64>,
}

/// Hidden marker that lets maur recognise its own progress message on a forge.
pub fn marker(task: &Task) -> String {
    format!("<!-- maur:progress:{} -->", task.id)
}

/// How many of the agent's latest actions a running task shows.
const RECENT_ACTIONS: usize = 3;

pub fn render(task: &Task, events: &[TaskEvent]) -> String {
    render_with(task, events, &RenderOptions::default(), Utc::now())
}

pub fn render_with(
    task: &Task,
    events: &[TaskEvent],
    options: &RenderOptions,
    now: DateTime<Utc>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", marker(task));
    let _ = writeln!(out, "{}\n", headline(task, events));
    if let Some(summary) = summary(task, events) {
        let _ = writeln!(out, "{summary}\n");
    }
    for line in checklist(task, events, now) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(tail) = failure_tail(task) {
        let _ = write!(out, "\n{tail}");
    }
    let _ = write!(out, "\n<sub>{}</sub>\n", footer(task, options).join(" · "));
    out
}

fn footer(task: &Task, options: &RenderOptions) -> Vec<String> {
    let mut footer = vec![format!("task `{}`", task.id)];
    if let Some(model) = &options.model {
        footer.push(format!("model `{}`", one_line(model).replace('`', "'")));
    }
    if task.input_tokens + task.output_tokens > 0 {
        footer.push(format!(
            "{} tokens in, {} out",
            task.input_tokens, task.output_tokens
        ));
    }
    let priced = match (options.price_input, options.price_output) {
        (None, None) => None,
        (i, o) => Some(
            (task.input_tokens as f64 * i.unwrap_or(0.0)
                + task.output_tokens as f64 * o.unwrap_or(0.0))
                / 1_000_000.0,
        ),
    };
    // A configured price wins over what the agent estimated.
    match priced {
        Some(cost) if task.input_tokens + task.output_tokens > 0 => {
            footer.push(format!("${cost:.2}"));
        }
        None if task.cost_usd > 0.0 => footer.push(format!("${:.2}", task.cost_usd)),
        _ => {}
    }
    footer
}

fn headline(task: &Task, events: &[TaskEvent]) -> String {
    let stopping = task.cancel_requested && task.status() == TaskStatus::Running;
    match task.status() {
        _ if stopping => "🛑 **Stopping**: cancel requested".to_owned(),
        TaskStatus::Queued if task.attempts == 0 => {
            "⏳ **Queued**: waiting for a worker".to_owned()
        }
        TaskStatus::Queued => {
            let why = last_of(events, "queued")
                .and_then(|e| e.data.get("error").or_else(|| e.data.get("reason")))
                .and_then(|v| v.as_str())
                .map(|r| format!(" after: {}", one_line(r)))
                .unwrap_or_default();
            format!("⏳ **Retrying**{why}")
        }
        TaskStatus::Running => format!(
            "🔄 **Working on it** (attempt {} of {})",
            task.attempts, task.max_attempts
        ),
        TaskStatus::Succeeded => match (task.outcome.as_deref(), task.pr_url.as_deref()) {
            (Some("pr_updated"), Some(url)) => {
                format!("✅ **Updated the {}**: {url}", change(task))
            }
            (_, Some(url)) => format!("✅ **Opened a {}**: {url}", change(task)),
            (Some("no_changes"), _) => "✅ **Done**: no changes were needed".to_owned(),
            (_, None) => match task.branch.as_deref() {
                Some(branch) => format!("✅ **Done**: pushed branch `{}`", one_line(branch)),
                None => "✅ **Done**".to_owned(),
            },
        },
        TaskStatus::Failed => format!(
            "❌ **Failed**: {}",
            one_line(
                task.error
                    .as_deref()
                    .unwrap_or("unknown error")
                    .lines()
                    .next()
                    .unwrap_or_default()
            )
        ),
        TaskStatus::Cancelled => "🚫 **Cancelled**".to_owned(),
    }
}

/// GitLab says merge request (its links say so too, whatever asked for the task).
fn change(task: &Task) -> &'static str {
    if task
        .pr_url
        .as_deref()
        .is_some_and(|u| u.contains("/merge_requests/"))
    {
        return "merge request";
    }
    crate::forge::request::change_word(&task.source)
}

/// The agent's own words about what it did (or why nothing was needed), once done.
fn summary(task: &Task, events: &[TaskEvent]) -> Option<String> {
    if task.status() != TaskStatus::Succeeded {
        return None;
    }
    let text = last_of(events, "succeeded")?
        .data
        .get("summary")?
        .as_str()?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(8)
        .map(|l| format!("> {}", one_line(l)))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// A failure's detail lines (the end of the agent's output), folded away.
fn failure_tail(task: &Task) -> Option<String> {
    if task.status() != TaskStatus::Failed {
        return None;
    }
    let error = task.error.as_deref()?;
    let rest: Vec<&str> = error.lines().skip(1).collect();
    let first = error.lines().next().unwrap_or_default();
    // "… exited with code 1: <last line>" keeps its tail on the first line; show it too.
    let mut lines: Vec<String> = first
        .split_once(": ")
        .map(|(_, t)| vec![t.to_owned()])
        .unwrap_or_default();
    lines.extend(rest.iter().map(|l| (*l).to_owned()));
    let lines: Vec<String> = lines
        .iter()
        .rev()
        .take(10)
        .rev()
        .map(|l| l.chars().take(300).collect())
        .collect();
    if lines.iter().all(|l| l.trim().is_empty()) || lines.len() < 2 {
        return None;
    }
    let body = lines.join("\n");
    // A fence longer than any backtick run inside, so the output cannot close it.
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    Some(format!(
        "<details><summary>Last lines of the output</summary>\n\n{fence}text\n{body}\n{fence}\n</details>\n"
    ))
}

struct Step {
    name: String,
    label: String,
    status: String,
    detail: Option<String>,
    started: DateTime<Utc>,
    ended: Option<DateTime<Utc>>,
}

/// One line per step, in the order steps first appeared; a step's latest event wins.
/// Step events carry `{"step": name, "label"?, "status"?: running|done|failed|skipped, "detail"?}`.
fn checklist(task: &Task, events: &[TaskEvent], now: DateTime<Utc>) -> Vec<String> {
    let mut steps: Vec<Step> = Vec::new();
    // Steps of the latest attempt only: a retry starts the list again.
    let from = events
        .iter()
        .rposition(|e| e.kind == "running")
        .unwrap_or(0);
    let events = &events[from..];
    for e in events.iter().filter(|e| e.kind == "step") {
        let field = |k: &str| e.data.get(k).and_then(|v| v.as_str());
        let Some(name) = field("step") else { continue };
        let status = field("status").unwrap_or("done").to_owned();
        let update = Step {
            name: name.to_owned(),
            label: field("label").unwrap_or(name).to_owned(),
            ended: (status != "running").then_some(e.at),
            status,
            detail: field("detail").map(one_line),
            started: e.at,
        };
        match steps.iter_mut().find(|s| s.name == name) {
            Some(step) => {
                step.status = update.status;
                step.ended = update.ended;
                step.detail = update.detail.or(step.detail.take());
            }
            None => steps.push(update),
        }
    }
    let ended = task.status().is_terminal();
    let mut lines = Vec::new();
    for s in steps {
        let label = one_line(&s.label);
        let detail = s.detail.map(|d| format!(": {d}")).unwrap_or_default();
        let took = s.ended.unwrap_or(now) - s.started;
        let elapsed = if s.name == "agent" {
            format!(" ({})", duration(took))
        } else {
            String::new()
        };
        lines.push(match s.status.as_str() {
            "failed" => format!("- ❌ {label}{detail}"),
            "running" if !ended => format!("- [ ] {label} …{elapsed}{detail}"),
            "running" | "skipped" => format!("- [ ] ~~{label}~~{detail}"),
            _ => format!("- [x] {label}{elapsed}{detail}"),
        });
        if s.name == "agent" && s.status == "running" && !ended {
            lines.extend(
                recent_actions(events)
                    .into_iter()
                    .map(|a| format!("  - {a}")),
            );
        }
    }
    lines
}

/// The agent's latest tool calls, newest last.
fn recent_actions(events: &[TaskEvent]) -> Vec<String> {
    let mut actions: Vec<String> = events
        .iter()
        .filter(|e| {
            e.kind == "agent" && e.data.get("type").and_then(|t| t.as_str()) == Some("tool_use")
        })
        .map(|e| {
            let tool = e
                .data
                .get("tool")
                .and_then(|t| t.as_str())
                .unwrap_or("tool");
            match e.data.get("target").and_then(|t| t.as_str()) {
                Some(target) => format!(
                    "{} `{}`",
                    one_line(tool),
                    one_line(target).replace('`', "'")
                ),
                None => one_line(tool),
            }
        })
        .collect();
    let keep = actions.len().saturating_sub(RECENT_ACTIONS);
    actions.drain(..keep);
    actions
}

fn duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

fn last_of<'a>(events: &'a [TaskEvent], kind: &str) -> Option<&'a TaskEvent> {
    events.iter().rev().find(|e| e.kind == kind)
}

/// Text from outside (errors, agent output) on one line, bounded, and unable to ping people
/// or open HTML in a forge comment.
pub fn one_line(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut short: String = flat.chars().take(300).collect();
    if flat.chars().count() > 300 {
        short.push('…');
    }
    short
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('@', "@&#8203;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;
    use uuid::Uuid;

    fn task(status: &str) -> Task {
        let mut t = Task::adhoc(&crate::task::NewTask {
            source: crate::task::Source::Github,
            dedup_key: None,
            title: "Fix pagination".into(),
            prompt: String::new(),
            repo_given: "acme/api".into(),
            repo: crate::repo::RepoRef::parse("acme/api").unwrap(),
            repo_branch: None,
            context: json!({}),
            max_attempts: 3,
            report_to: None,
        });
        t.id = Uuid::nil();
        t.status = status.into();
        t
    }

    fn events(list: &[(&str, serde_json::Value)]) -> Vec<TaskEvent> {
        list.iter()
            .enumerate()
            .map(|(i, (kind, data))| TaskEvent {
                task_id: Uuid::nil(),
                seq: i as i32 + 1,
                at: Utc::now(),
                kind: (*kind).into(),
                data: data.clone(),
            })
            .collect()
    }

    #[test]
    fn a_running_task_shows_its_steps() {
        let t = task("running");
        let ev = events(&[
            ("queued", json!({})),
            ("running", json!({"attempt": 1})),
            (
                "step",
                json!({"step": "checkout", "label": "Checked out `main`"}),
            ),
            (
                "step",
                json!({"step": "agent", "label": "Agent working", "status": "running"}),
            ),
        ]);
        let body = render_with(&t, &ev, &RenderOptions::default(), ev[0].at);
        assert_eq!(
            body,
            "<!-- maur:progress:00000000-0000-0000-0000-000000000000 -->\n\
             🔄 **Working on it** (attempt 1 of 3)\n\n\
             - [x] Checked out `main`\n\
             - [ ] Agent working … (0s)\n\n\
             <sub>task `00000000-0000-0000-0000-000000000000`</sub>\n"
        );
    }

    #[test]
    fn the_latest_status_of_a_step_wins_and_details_stay() {
        let mut t = task("succeeded");
        t.outcome = Some("pr_opened".into());
        t.pr_url = Some("https://github.com/acme/api/pull/7".into());
        t.input_tokens = 1200;
        t.output_tokens = 300;
        t.cost_usd = 0.0123;
        let ev = events(&[
            (
                "step",
                json!({"step": "agent", "status": "running", "detail": "editing src/lib.rs"}),
            ),
            ("step", json!({"step": "agent", "status": "done"})),
            ("step", json!({"step": "tests", "status": "running"})),
        ]);
        let body = render_with(&t, &ev, &RenderOptions::default(), ev[0].at);
        assert!(body.contains("✅ **Opened a pull request**: https://github.com/acme/api/pull/7"));
        assert!(body.contains("- [x] agent (0s): editing src/lib.rs\n"));
        // A step still running when the task ended did not finish.
        assert!(body.contains("- [ ] ~~tests~~\n"));
        assert!(body.contains("1200 tokens in, 300 out · $0.01"));
    }

    #[test]
    fn headlines_for_every_state() {
        let mut t = task("queued");
        t.attempts = 0;
        assert!(render(&t, &[]).contains("⏳ **Queued**"));
        t.attempts = 1;
        let ev = events(&[("queued", json!({"error": "forge answered 502"}))]);
        assert!(render(&t, &ev).contains("⏳ **Retrying** after: forge answered 502"));
        let mut t = task("running");
        t.cancel_requested = true;
        assert!(render(&t, &[]).contains("🛑 **Stopping**"));
        let mut t = task("failed");
        t.error = Some("agent exited with code 1".into());
        assert!(render(&t, &[]).contains("❌ **Failed**: agent exited with code 1"));
        assert!(render(&task("cancelled"), &[]).contains("🚫 **Cancelled**"));
        let mut t = task("succeeded");
        t.outcome = Some("no_changes".into());
        assert!(render(&t, &[]).contains("no changes were needed"));
        let mut t = task("succeeded");
        t.branch = Some("maur/x".into());
        assert!(render(&t, &[]).contains("pushed branch `maur/x`"));
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn timed(list: &[(i64, &str, serde_json::Value)]) -> Vec<TaskEvent> {
        list.iter()
            .enumerate()
            .map(|(i, (secs, kind, data))| TaskEvent {
                task_id: Uuid::nil(),
                seq: i as i32 + 1,
                at: at(*secs),
                kind: (*kind).into(),
                data: data.clone(),
            })
            .collect()
    }

    #[test]
    fn snapshot_an_agent_at_work() {
        let mut t = task("running");
        t.attempts = 1;
        t.input_tokens = 1500;
        t.output_tokens = 250;
        let ev = timed(&[
            (0, "queued", json!({})),
            (1, "running", json!({"attempt": 1})),
            (
                1,
                "step",
                json!({"step": "checkout", "label": "Check out the repository", "status": "running"}),
            ),
            (
                2,
                "step",
                json!({"step": "checkout", "status": "done", "detail": "main at 1a2b3c4"}),
            ),
            (
                2,
                "step",
                json!({"step": "agent", "label": "Run OpenCode", "status": "running"}),
            ),
            (
                3,
                "agent",
                json!({"type": "tool_use", "tool": "read", "target": "src/lib.rs", "status": "completed"}),
            ),
            (4, "agent", json!({"type": "text", "text": "thinking"})),
            (
                5,
                "agent",
                json!({"type": "tool_use", "tool": "grep", "target": "page(", "status": "completed"}),
            ),
            (
                6,
                "agent",
                json!({"type": "tool_use", "tool": "edit", "target": "src/lib.rs", "status": "completed"}),
            ),
            (
                7,
                "agent",
                json!({"type": "tool_use", "tool": "bash", "target": "cargo test", "status": "running"}),
            ),
        ]);
        let options = RenderOptions {
            model: Some("qwen3.5:4b".into()),
            price_input: Some(1.0),
            price_output: Some(4.0),
        };
        assert_eq!(
            render_with(&t, &ev, &options, at(84)),
            "<!-- maur:progress:00000000-0000-0000-0000-000000000000 -->\n\
             🔄 **Working on it** (attempt 1 of 3)\n\n\
             - [x] Check out the repository: main at 1a2b3c4\n\
             - [ ] Run OpenCode … (1m 22s)\n\
             \x20\x20- grep `page(`\n\
             \x20\x20- edit `src/lib.rs`\n\
             \x20\x20- bash `cargo test`\n\n\
             <sub>task `00000000-0000-0000-0000-000000000000` · model `qwen3.5:4b` · 1500 tokens in, 250 out · $0.00</sub>\n"
        );
    }

    #[test]
    fn snapshot_a_failure_with_the_end_of_the_output() {
        let mut t = task("failed");
        t.error = Some("the command exited with code 3: error[E0308]: mismatched types\n  --> src/lib.rs:1:40\nmention @ann ```".into());
        let ev = timed(&[
            (1, "running", json!({"attempt": 1})),
            (
                2,
                "step",
                json!({"step": "agent", "label": "Run the command", "status": "running"}),
            ),
            (
                9,
                "step",
                json!({"step": "agent", "status": "failed", "detail": "exited with code 3"}),
            ),
            (9, "failed", json!({"error": "x"})),
        ]);
        assert_eq!(
            render_with(&t, &ev, &RenderOptions::default(), at(100)),
            "<!-- maur:progress:00000000-0000-0000-0000-000000000000 -->\n\
             ❌ **Failed**: the command exited with code 3: error[E0308]: mismatched types\n\n\
             - ❌ Run the command: exited with code 3\n\n\
             <details><summary>Last lines of the output</summary>\n\n\
             ````text\n\
             error[E0308]: mismatched types\n\
             \x20\x20--> src/lib.rs:1:40\n\
             mention @ann ```\n\
             ````\n\
             </details>\n\n\
             <sub>task `00000000-0000-0000-0000-000000000000`</sub>\n"
        );
    }

    #[test]
    fn snapshot_no_changes_needed_with_the_agents_explanation() {
        let mut t = task("succeeded");
        t.outcome = Some("no_changes".into());
        t.cost_usd = 0.031;
        t.input_tokens = 10;
        let ev = timed(&[
            (1, "running", json!({"attempt": 1})),
            (
                2,
                "step",
                json!({"step": "agent", "label": "Run OpenCode", "status": "running"}),
            ),
            (32, "step", json!({"step": "agent", "status": "done"})),
            (
                33,
                "step",
                json!({"step": "commit", "label": "Commit the change", "status": "skipped", "detail": "the agent changed nothing"}),
            ),
            (
                33,
                "succeeded",
                json!({"outcome": "no_changes", "summary": "page() is already correct.\n\nThe test <b>passes</b>."}),
            ),
        ]);
        assert_eq!(
            render_with(&t, &ev, &RenderOptions::default(), at(100)),
            "<!-- maur:progress:00000000-0000-0000-0000-000000000000 -->\n\
             ✅ **Done**: no changes were needed\n\n\
             > page() is already correct.\n\
             > The test &lt;b&gt;passes&lt;/b&gt;.\n\n\
             - [x] Run OpenCode (30s)\n\
             - [ ] ~~Commit the change~~: the agent changed nothing\n\n\
             <sub>task `00000000-0000-0000-0000-000000000000` · 10 tokens in, 0 out · $0.03</sub>\n"
        );
    }

    #[test]
    fn outside_text_cannot_ping_people_or_inject_html() {
        let mut t = task("failed");
        t.error = Some("cc @octocat <img src=x onerror=alert(1)>\nsecond line".into());
        let body = render(&t, &[]);
        assert!(
            body.contains("❌ **Failed**: cc @&#8203;octocat &lt;img src=x onerror=alert(1)&gt;\n")
        );
        assert!(!body.contains("@octocat"));
        let long = "x".repeat(1000);
        assert!(one_line(&long).chars().count() <= 301);
    }
}
