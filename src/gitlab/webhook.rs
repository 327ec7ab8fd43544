//! What a GitLab webhook asks of maur, decided from the event name and payload alone.
//! Payloads are read leniently: a delivery maur cannot use is ignored with a reason.

use serde::Deserialize;
use serde_json::Value;

use crate::forge::ReactTarget;
use crate::forge::request::{PrHead, Request};
use crate::github::command;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// GitLab's "Test" button.
    Test,
    Ignore(String),
    Command(Box<Request>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Payload {
    user: Option<User>,
    project: Option<Project>,
    object_attributes: Option<Attributes>,
    issue: Option<Item>,
    merge_request: Option<Item>,
    labels: Option<Vec<Label>>,
    changes: Option<Changes>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct User {
    id: Option<i64>,
    username: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Project {
    id: Option<i64>,
    path_with_namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Attributes {
    id: Option<i64>,
    iid: Option<u64>,
    note: Option<String>,
    noteable_type: Option<String>,
    action: Option<String>,
    system: Option<bool>,
    title: Option<String>,
    description: Option<String>,
    url: Option<String>,
    labels: Option<Vec<Label>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Item {
    iid: Option<u64>,
    title: Option<String>,
    description: Option<String>,
    url: Option<String>,
    source_branch: Option<String>,
    source_project_id: Option<i64>,
    target_project_id: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Label {
    title: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Changes {
    labels: Option<LabelChange>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LabelChange {
    previous: Option<Vec<Label>>,
    current: Option<Vec<Label>>,
}

fn ignore(why: impl Into<String>) -> Decision {
    Decision::Ignore(why.into())
}

/// Bot users of group and project access tokens (`project_12_bot_…`), and GitLab's own.
pub fn is_bot(username: &str) -> bool {
    let mut parts = username.split('_');
    let scoped = matches!(parts.next(), Some("project" | "group"))
        && parts
            .next()
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        && parts.next() == Some("bot");
    scoped || username == "ghost" || username.ends_with("-bot") || username.ends_with("[bot]")
}

fn has(labels: &Option<Vec<Label>>, wanted: &str) -> bool {
    labels.iter().flatten().any(|l| {
        l.title
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(wanted))
    })
}

pub fn decide(event: &str, payload: &Value, command_word: &str, label: &str) -> Decision {
    if event == "Test Hook" {
        return Decision::Test;
    }
    if event != "Note Hook" && event != "Issue Hook" {
        return ignore(format!("maur does not act on {event:?} events"));
    }
    let p: Payload = match Payload::deserialize(payload) {
        Ok(p) => p,
        Err(e) => return ignore(format!("{event} payload not understood: {e}")),
    };
    let Some(user) = p.user.as_ref() else {
        return ignore("no user in the payload");
    };
    let sender = user.username.clone().unwrap_or_default();
    if is_bot(&sender) {
        return ignore("sent by a bot; bots never trigger maur");
    }
    let Some(repo) = p
        .project
        .as_ref()
        .and_then(|p| p.path_with_namespace.clone())
    else {
        return ignore("no project in the payload");
    };
    let Some(attrs) = p.object_attributes.as_ref() else {
        return ignore("no object_attributes in the payload");
    };
    let base = |number: u64, item: &Item, is_pr: bool, command, react, head| Request {
        repo: repo.clone(),
        installation: None,
        number,
        is_pr,
        title: item.title.clone().unwrap_or_default(),
        body: item.description.clone().unwrap_or_default(),
        url: item.url.clone().unwrap_or_default(),
        command,
        sender: sender.clone(),
        sender_id: user.id.unwrap_or_default(),
        react,
        head,
    };
    if event == "Issue Hook" {
        let action = attrs.action.as_deref().unwrap_or_default();
        let added = match action {
            // A new issue that carries the label from the start.
            "open" => has(&attrs.labels, label) || has(&p.labels, label),
            "update" => p
                .changes
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .is_some_and(|l| has(&l.current, label) && !has(&l.previous, label)),
            _ => false,
        };
        if !added {
            return ignore(format!("issue {action}: the {label:?} label was not added"));
        }
        let Some(number) = attrs.iid else {
            return ignore("issue without an iid");
        };
        let item = Item {
            title: attrs.title.clone(),
            description: attrs.description.clone(),
            url: attrs.url.clone(),
            ..Item::default()
        };
        return Decision::Command(Box::new(base(
            number,
            &item,
            false,
            command::Command::Fix(String::new()),
            ReactTarget::Issue,
            None,
        )));
    }
    // Note Hook. Older GitLab sends no action; newer sends "create" or "update".
    if attrs.action.as_deref().is_some_and(|a| a != "create") {
        return ignore("note edited: only new notes are read");
    }
    if attrs.system == Some(true) {
        return ignore("a system note");
    }
    let Some(command) = command::parse(attrs.note.as_deref().unwrap_or_default(), command_word)
    else {
        return ignore(format!("no {command_word} command in the note"));
    };
    let Some(note_id) = attrs.id else {
        return ignore("note without an id");
    };
    let react = ReactTarget::Comment {
        id: note_id.to_string(),
    };
    match attrs.noteable_type.as_deref() {
        Some("Issue") => match p.issue.as_ref().and_then(|i| i.iid.map(|n| (n, i))) {
            Some((number, item)) => {
                Decision::Command(Box::new(base(number, item, false, command, react, None)))
            }
            None => ignore("issue note without the issue"),
        },
        Some("MergeRequest") => {
            match p.merge_request.as_ref().and_then(|m| m.iid.map(|n| (n, m))) {
                Some((number, mr)) => {
                    let same = mr.source_project_id.is_some()
                        && (mr.source_project_id == mr.target_project_id
                            || mr.source_project_id == p.project.as_ref().and_then(|p| p.id));
                    let head = mr.source_branch.as_ref().map(|branch| PrHead {
                        repo: Some(if same {
                            repo.clone()
                        } else {
                            format!(
                                "another project (#{})",
                                mr.source_project_id.unwrap_or_default()
                            )
                        }),
                        branch: branch.clone(),
                    });
                    Decision::Command(Box::new(base(number, mr, true, command, react, head)))
                }
                None => ignore("merge request note without the merge request"),
            }
        }
        other => ignore(format!(
            "notes on {} need no action",
            other.unwrap_or("unknown things")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::command::Command;
    use serde_json::json;

    fn note(body: &str, noteable: &str) -> Value {
        json!({
            "object_kind": "note",
            "user": {"id": 7, "username": "ann"},
            "project": {"id": 5, "path_with_namespace": "acme/api"},
            "object_attributes": {"id": 99, "note": body, "noteable_type": noteable, "action": "create"},
            "issue": {"iid": 12, "title": "Pager", "description": "off by one", "url": "https://gitlab.example/acme/api/-/issues/12"},
            "merge_request": {"iid": 4, "title": "Rename", "source_branch": "feature", "source_project_id": 5, "target_project_id": 5},
        })
    }

    #[test]
    fn notes_with_the_command_are_requests() {
        let Decision::Command(r) =
            decide("Note Hook", &note("/maur fix it", "Issue"), "/maur", "maur")
        else {
            panic!()
        };
        assert_eq!(
            (r.repo.as_str(), r.number, r.is_pr, r.sender_id),
            ("acme/api", 12, false, 7)
        );
        assert_eq!(r.command, Command::Fix("it".into()));
        assert_eq!(r.react, ReactTarget::Comment { id: "99".into() });
        let Decision::Command(r) = decide(
            "Note Hook",
            &note("/maur fix", "MergeRequest"),
            "/maur",
            "maur",
        ) else {
            panic!()
        };
        assert!(r.is_pr);
        assert_eq!(
            r.head,
            Some(PrHead {
                repo: Some("acme/api".into()),
                branch: "feature".into()
            })
        );
        let mut fork = note("/maur fix", "MergeRequest");
        fork["merge_request"]["source_project_id"] = json!(9);
        let Decision::Command(r) = decide("Note Hook", &fork, "/maur", "maur") else {
            panic!()
        };
        assert_ne!(r.head.unwrap().repo.as_deref(), Some("acme/api"));
    }

    #[test]
    fn edits_bots_system_notes_and_other_events_are_ignored() {
        let mut edited = note("/maur fix", "Issue");
        edited["object_attributes"]["action"] = json!("update");
        let mut bot = note("/maur fix", "Issue");
        bot["user"]["username"] = json!("project_5_bot_3f2a");
        let mut system = note("/maur fix", "Issue");
        system["object_attributes"]["system"] = json!(true);
        for payload in [
            edited,
            bot,
            system,
            note("thanks", "Issue"),
            note("/maur fix", "Commit"),
        ] {
            assert!(
                matches!(
                    decide("Note Hook", &payload, "/maur", "maur"),
                    Decision::Ignore(_)
                ),
                "{payload}"
            );
        }
        assert_eq!(
            decide("Test Hook", &json!({}), "/maur", "maur"),
            Decision::Test
        );
        assert!(matches!(
            decide("Push Hook", &json!({}), "/maur", "maur"),
            Decision::Ignore(_)
        ));
        assert!(is_bot("group_12_bot_9a") && !is_bot("project_manager") && !is_bot("ann"));
    }

    #[test]
    fn only_a_newly_added_label_starts_work() {
        let issue = |previous: Value, current: Value, action: &str| {
            json!({
                "object_kind": "issue", "user": {"id": 7, "username": "ann"},
                "project": {"id": 5, "path_with_namespace": "acme/api"},
                "object_attributes": {"iid": 3, "title": "T", "action": action, "labels": current.clone()},
                "changes": {"labels": {"previous": previous, "current": current}},
            })
        };
        let maur = json!([{"title": "maur"}]);
        let none = json!([]);
        let Decision::Command(r) = decide(
            "Issue Hook",
            &issue(none.clone(), maur.clone(), "update"),
            "/maur",
            "maur",
        ) else {
            panic!()
        };
        assert_eq!((r.number, r.react.clone()), (3, ReactTarget::Issue));
        assert!(
            matches!(
                decide(
                    "Issue Hook",
                    &issue(maur.clone(), maur.clone(), "update"),
                    "/maur",
                    "maur"
                ),
                Decision::Ignore(_)
            ),
            "already there"
        );
        let mut edit = issue(maur.clone(), maur.clone(), "update");
        edit.as_object_mut().unwrap().remove("changes");
        assert!(
            matches!(
                decide("Issue Hook", &edit, "/maur", "maur"),
                Decision::Ignore(_)
            ),
            "a plain edit"
        );
        assert!(matches!(
            decide(
                "Issue Hook",
                &issue(none.clone(), maur.clone(), "open"),
                "/maur",
                "maur"
            ),
            Decision::Command(_)
        ));
    }
}
