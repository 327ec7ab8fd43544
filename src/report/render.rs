//! The progress message: a pure function of the task and its events, so every forge shows
//! the same text and a retry renders exactly what the first attempt would have.

use std::fmt::Write;

use crate::task::{Task, TaskEvent, TaskStatus};

/// Hidden marker that lets maur recognise its own progress message on a forge.
pub fn marker(task: &Task) -> String {
    format!("<!-- maur:progress:{} -->", task.id)
}

pub fn render(task: &Task, events: &[TaskEvent]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", marker(task));
    let _ = writeln!(out, "{}\n", headline(task, events));
    for line in checklist(task, events) {
        let _ = writeln!(out, "{line}");
    }
    let mut footer = vec![format!("task `{}`", task.id)];
    if task.input_tokens + task.output_tokens > 0 {
        footer.push(format!(
            "{} tokens in, {} out",
            task.input_tokens, task.output_tokens
        ));
    }
    if task.cost_usd > 0.0 {
        footer.push(format!("${:.2}", task.cost_usd));
    }
    let _ = write!(out, "\n<sub>{}</sub>\n", footer.join(" · "));
    out
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
            (Some("pr_updated"), Some(url)) => format!("✅ **Updated the pull request**: {url}"),
            (_, Some(url)) => format!("✅ **Opened a pull request**: {url}"),
            (Some("no_changes"), _) => "✅ **Done**: no changes were needed".to_owned(),
            (_, None) => match task.branch.as_deref() {
                Some(branch) => format!("✅ **Done**: pushed branch `{}`", one_line(branch)),
                None => "✅ **Done**".to_owned(),
            },
        },
        TaskStatus::Failed => format!(
            "❌ **Failed**: {}",
            one_line(task.error.as_deref().unwrap_or("unknown error"))
        ),
        TaskStatus::Cancelled => "🚫 **Cancelled**".to_owned(),
    }
}

struct Step {
    name: String,
    label: String,
    status: String,
    detail: Option<String>,
}

/// One line per step, in the order steps first appeared; a step's latest event wins.
/// Step events carry `{"step": name, "label"?, "status"?: running|done|failed|skipped, "detail"?}`.
fn checklist(task: &Task, events: &[TaskEvent]) -> Vec<String> {
    let mut steps: Vec<Step> = Vec::new();
    for e in events.iter().filter(|e| e.kind == "step") {
        let field = |k: &str| e.data.get(k).and_then(|v| v.as_str());
        let Some(name) = field("step") else { continue };
        let update = Step {
            name: name.to_owned(),
            label: field("label").unwrap_or(name).to_owned(),
            status: field("status").unwrap_or("done").to_owned(),
            detail: field("detail").map(one_line),
        };
        match steps.iter_mut().find(|s| s.name == name) {
            Some(step) => {
                step.status = update.status;
                step.detail = update.detail.or(step.detail.take());
            }
            None => steps.push(update),
        }
    }
    let ended = task.status().is_terminal();
    steps
        .into_iter()
        .map(|s| {
            let label = one_line(&s.label);
            let detail = s.detail.map(|d| format!(": {d}")).unwrap_or_default();
            match s.status.as_str() {
                "failed" => format!("- ❌ {label}{detail}"),
                "running" if !ended => format!("- [ ] {label} …{detail}"),
                "running" | "skipped" => format!("- [ ] ~~{label}~~{detail}"),
                _ => format!("- [x] {label}{detail}"),
            }
        })
        .collect()
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
        let body = render(&t, &ev);
        assert_eq!(
            body,
            "<!-- maur:progress:00000000-0000-0000-0000-000000000000 -->\n\
             🔄 **Working on it** (attempt 1 of 3)\n\n\
             - [x] Checked out `main`\n\
             - [ ] Agent working …\n\n\
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
        let body = render(&t, &ev);
        assert!(body.contains("✅ **Opened a pull request**: https://github.com/acme/api/pull/7"));
        assert!(body.contains("- [x] agent: editing src/lib.rs\n"));
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

    #[test]
    fn outside_text_cannot_ping_people_or_inject_html() {
        let mut t = task("failed");
        t.error = Some("cc @octocat <img src=x onerror=alert(1)>\nsecond line".into());
        let body = render(&t, &[]);
        assert!(body.contains("cc @&#8203;octocat &lt;img src=x onerror=alert(1)&gt; second line"));
        assert!(!body.contains("@octocat"));
        let long = "x".repeat(1000);
        assert!(one_line(&long).chars().count() <= 301);
    }
}
