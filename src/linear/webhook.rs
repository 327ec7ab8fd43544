//! What a Linear webhook asks of maur, from the payload alone: an issue that just got the
//! label starts a task. Read leniently; anything else is ignored with a reason.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Ignore(String),
    Start(Ticket),
    /// maur as a Linear agent: a session started (mentioned or delegated an issue), or a
    /// follow-up message in it.
    Agent(Session),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    pub session_id: String,
    pub ticket: Ticket,
    /// Linear's own summary of what is asked (the issue, the mention, the thread).
    pub context: String,
    /// `prompted`: what the person wrote in the session.
    pub follow_up: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ticket {
    pub issue_id: String,
    /// `ENG-123`
    pub identifier: String,
    pub title: String,
    pub description: String,
    pub url: String,
    pub team: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Payload {
    action: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    data: Option<Issue>,
    #[serde(rename = "updatedFrom")]
    updated_from: Option<UpdatedFrom>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Issue {
    id: Option<String>,
    identifier: Option<String>,
    title: Option<String>,
    description: Option<String>,
    url: Option<String>,
    team: Option<Team>,
    labels: Option<Vec<Label>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Team {
    key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Label {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UpdatedFrom {
    #[serde(rename = "labelIds")]
    label_ids: Option<Vec<String>>,
}

fn ignore(why: impl Into<String>) -> Decision {
    Decision::Ignore(why.into())
}

pub fn decide(payload: &Value, label: &str) -> Decision {
    let p: Payload = match Payload::deserialize(payload) {
        Ok(p) => p,
        Err(e) => return ignore(format!("payload not understood: {e}")),
    };
    let kind = p.kind.as_deref().unwrap_or_default();
    if kind == "AgentSessionEvent" {
        return agent(payload, p.action.as_deref().unwrap_or_default());
    }
    if kind != "Issue" {
        return ignore(format!("maur does not act on {kind:?} events"));
    }
    let Some(issue) = p.data else {
        return ignore("an Issue event without data");
    };
    let ours = issue.labels.iter().flatten().find(|l| {
        l.name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(label))
    });
    let Some(ours) = ours else {
        return ignore(format!("the issue does not have the {label:?} label"));
    };
    let action = p.action.as_deref().unwrap_or_default();
    let newly = match action {
        "create" => true,
        // An edit of an issue that already had the label must not start another task.
        "update" => p
            .updated_from
            .and_then(|u| u.label_ids)
            .is_some_and(|before| ours.id.as_ref().is_none_or(|id| !before.contains(id))),
        _ => false,
    };
    if !newly {
        return ignore(format!(
            "issue {action}: the {label:?} label was not just added"
        ));
    }
    let Some(issue_id) = issue.id else {
        return ignore("an issue without an id");
    };
    Decision::Start(Ticket {
        identifier: issue.identifier.unwrap_or_else(|| issue_id.clone()),
        issue_id,
        title: issue.title.unwrap_or_default(),
        description: issue.description.unwrap_or_default(),
        url: issue.url.unwrap_or_default(),
        team: issue.team.and_then(|t| t.key),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AgentPayload {
    #[serde(rename = "agentSession")]
    session: Option<AgentSession>,
    #[serde(rename = "promptContext")]
    prompt_context: Option<String>,
    #[serde(rename = "agentActivity")]
    activity: Option<Activity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AgentSession {
    id: Option<String>,
    issue: Option<Issue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Activity {
    content: Option<ActivityContent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ActivityContent {
    body: Option<String>,
}

fn agent(payload: &Value, action: &str) -> Decision {
    let p: AgentPayload = match AgentPayload::deserialize(payload) {
        Ok(p) => p,
        Err(e) => return ignore(format!("agent session payload not understood: {e}")),
    };
    let Some(session) = p.session else {
        return ignore("an agent session event without its session");
    };
    let (Some(session_id), Some(issue)) = (session.id, session.issue) else {
        return ignore("an agent session without an id or an issue");
    };
    let Some(issue_id) = issue.id else {
        return ignore("an agent session on an issue without an id");
    };
    let follow_up = match action {
        "created" => None,
        "prompted" => Some(
            p.activity
                .and_then(|a| a.content)
                .and_then(|c| c.body)
                .unwrap_or_default(),
        ),
        other => return ignore(format!("agent session {other:?} needs no action")),
    };
    Decision::Agent(Session {
        session_id,
        ticket: Ticket {
            identifier: issue.identifier.unwrap_or_else(|| issue_id.clone()),
            issue_id,
            title: issue.title.unwrap_or_default(),
            description: issue.description.unwrap_or_default(),
            url: issue.url.unwrap_or_default(),
            team: issue.team.and_then(|t| t.key),
        },
        context: p.prompt_context.unwrap_or_default(),
        follow_up,
    })
}

/// The agent's task for a session: Linear's context when it gives one, else the issue.
pub fn session_prompt(session: &Session) -> String {
    if session.context.trim().is_empty() {
        prompt(&session.ticket)
    } else {
        format!(
            "Resolve Linear issue {} as asked below.\n\n{}\n",
            session.ticket.identifier,
            session.context.trim()
        )
    }
}

/// The agent's task for a Linear issue.
pub fn prompt(ticket: &Ticket) -> String {
    format!(
        "Resolve Linear issue {}: {}\n\n{}\n",
        ticket.identifier,
        ticket.title.trim(),
        ticket.description.trim()
    )
}

/// The comment that says why nothing started, and how to fix that.
pub fn no_repository(label: &str) -> String {
    format!(
        "maur cannot tell which repository this issue is about, so nothing started. Link the \
         GitHub or GitLab repository (or a pull request) in the description, or add a line \
         `repo: owner/name`, then remove and add the `{label}` label again. Teams can also get \
         a default repository (`MAUR_LINEAR_REPOS`)."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(action: &str, before: Option<Vec<&str>>) -> Value {
        let mut e = json!({
            "action": action, "type": "Issue", "webhookTimestamp": 1,
            "data": {"id": "iss-1", "identifier": "ENG-7", "title": "Pager", "description": "repo: acme/api",
                     "url": "https://linear.app/acme/issue/ENG-7", "team": {"key": "ENG"},
                     "labels": [{"id": "lab-maur", "name": "Maur"}, {"id": "lab-bug", "name": "bug"}]},
        });
        if let Some(before) = before {
            e["updatedFrom"] = json!({"labelIds": before});
        }
        e
    }

    #[test]
    fn the_label_starts_work_once() {
        let Decision::Start(t) = decide(&event("create", None), "maur") else {
            panic!()
        };
        assert_eq!(
            (
                t.issue_id.as_str(),
                t.identifier.as_str(),
                t.team.as_deref()
            ),
            ("iss-1", "ENG-7", Some("ENG"))
        );
        assert!(matches!(
            decide(&event("update", Some(vec!["lab-bug"])), "maur"),
            Decision::Start(_)
        ));
        assert!(
            matches!(
                decide(&event("update", Some(vec!["lab-maur"])), "maur"),
                Decision::Ignore(_)
            ),
            "already had it"
        );
        assert!(
            matches!(decide(&event("update", None), "maur"), Decision::Ignore(_)),
            "labels did not change"
        );
        assert!(matches!(
            decide(&event("remove", None), "maur"),
            Decision::Ignore(_)
        ));
        assert!(matches!(
            decide(&json!({"type": "Comment", "action": "create"}), "maur"),
            Decision::Ignore(_)
        ));
        assert!(matches!(
            decide(&json!({"type": 5}), "maur"),
            Decision::Ignore(_)
        ));
        assert!(
            prompt(&Ticket {
                identifier: "ENG-7".into(),
                title: "Pager".into(),
                ..Default::default()
            })
            .starts_with("Resolve Linear issue ENG-7: Pager")
        );
    }
}
