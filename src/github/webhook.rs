//! What a GitHub webhook asks of maur, decided from the event name and payload alone.
//! Payloads are read leniently (every field optional): GitHub adds fields all the time, and
//! an event maur cannot use is ignored with a reason, never an error.

use serde::Deserialize;
use serde_json::Value;

use super::command::{self, Command};
use super::settings::GitHubSettings;
use crate::forge::ReactTarget;
use crate::forge::request::{PrHead, Request};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Ping,
    Ignore(String),
    Installation {
        id: i64,
        account: String,
        change: InstallChange,
    },
    Command(Request),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallChange {
    /// Created, or permissions accepted: the full list of repositories.
    Repositories(Vec<String>),
    Added {
        added: Vec<String>,
        removed: Vec<String>,
    },
    Deleted,
    Suspended(bool),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Payload {
    action: Option<String>,
    installation: Option<Installation>,
    repository: Option<Repository>,
    sender: Option<User>,
    issue: Option<Issue>,
    comment: Option<CommentP>,
    pull_request: Option<PullRequestP>,
    label: Option<Label>,
    repositories: Option<Vec<Repository>>,
    repositories_added: Option<Vec<Repository>>,
    repositories_removed: Option<Vec<Repository>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Installation {
    id: Option<i64>,
    account: Option<User>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Repository {
    full_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct User {
    login: Option<String>,
    id: Option<i64>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Issue {
    number: Option<u64>,
    title: Option<String>,
    body: Option<String>,
    html_url: Option<String>,
    pull_request: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CommentP {
    id: Option<i64>,
    body: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PullRequestP {
    number: Option<u64>,
    title: Option<String>,
    body: Option<String>,
    html_url: Option<String>,
    head: Option<Branch>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Branch {
    #[serde(rename = "ref")]
    name: Option<String>,
    repo: Option<Repository>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Label {
    name: Option<String>,
}

fn names(list: Option<Vec<Repository>>) -> Vec<String> {
    list.unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.full_name)
        .collect()
}

fn ignore(why: impl Into<String>) -> Decision {
    Decision::Ignore(why.into())
}

pub fn decide(event: &str, payload: &Value, settings: &GitHubSettings) -> Decision {
    if event == "ping" {
        return Decision::Ping;
    }
    // A field of an unexpected type makes the whole payload unusable, not an error.
    let p: Payload = match Payload::deserialize(payload) {
        Ok(p) => p,
        Err(e) => return ignore(format!("{event} payload not understood: {e}")),
    };
    let action = p.action.clone().unwrap_or_default();
    match event {
        "installation" | "installation_repositories" => installation(event, &action, p),
        "issue_comment" | "pull_request_review_comment" | "issues" => {
            if p.sender.as_ref().and_then(|s| s.kind.as_deref()) == Some("Bot") {
                return ignore("sent by a bot; bots never trigger maur");
            }
            match event {
                "issues" => labeled(&action, p, settings),
                _ => comment(event, &action, p, settings),
            }
        }
        "pull_request" => ignore("pull_request events need no action"),
        other => ignore(format!("maur does not act on {other:?} events")),
    }
}

fn installation(event: &str, action: &str, p: Payload) -> Decision {
    let Some(inst) = p.installation else {
        return ignore(format!("{event} without an installation"));
    };
    let (Some(id), account) = (
        inst.id,
        inst.account.and_then(|a| a.login).unwrap_or_default(),
    ) else {
        return ignore(format!("{event} without an installation id"));
    };
    let change = match (event, action) {
        ("installation", "created" | "new_permissions_accepted") => {
            InstallChange::Repositories(names(p.repositories))
        }
        ("installation", "deleted") => InstallChange::Deleted,
        ("installation", "suspend") => InstallChange::Suspended(true),
        ("installation", "unsuspend") => InstallChange::Suspended(false),
        ("installation_repositories", "added" | "removed") => InstallChange::Added {
            added: names(p.repositories_added),
            removed: names(p.repositories_removed),
        },
        _ => return ignore(format!("{event}.{action} needs no action")),
    };
    Decision::Installation {
        id,
        account,
        change,
    }
}

fn labeled(action: &str, p: Payload, settings: &GitHubSettings) -> Decision {
    if action != "labeled" {
        return ignore(format!("issues.{action} needs no action"));
    }
    let label = p.label.and_then(|l| l.name).unwrap_or_default();
    if !label.eq_ignore_ascii_case(&settings.label) {
        return ignore(format!("label {label:?} is not {:?}", settings.label));
    }
    let Some(issue) = p.issue else {
        return ignore("labeled event without an issue");
    };
    request(
        p.repository,
        p.installation,
        p.sender,
        issue_fields(&issue),
        issue.pull_request.is_some(),
        Command::Fix(String::new()),
        ReactTarget::Issue,
        None,
    )
}

fn comment(event: &str, action: &str, p: Payload, settings: &GitHubSettings) -> Decision {
    if action != "created" {
        return ignore(format!("comment {action}: only new comments are read"));
    }
    let Some(comment) = p.comment else {
        return ignore(format!("{event} without a comment"));
    };
    let Some(command) = command::parse(
        comment.body.as_deref().unwrap_or_default(),
        &settings.command,
    ) else {
        return ignore(format!("no {} command in the comment", settings.command));
    };
    let Some(id) = comment.id.map(|id| id.to_string()) else {
        return ignore(format!("{event} without a comment id"));
    };
    if event == "pull_request_review_comment" {
        let Some(pr) = p.pull_request else {
            return ignore("review comment without a pull request");
        };
        let head = pr.head.as_ref().map(|h| PrHead {
            repo: h.repo.as_ref().and_then(|r| r.full_name.clone()),
            branch: h.name.clone().unwrap_or_default(),
        });
        let fields = (
            pr.number,
            pr.title.clone(),
            pr.body.clone(),
            pr.html_url.clone(),
        );
        return request(
            p.repository,
            p.installation,
            p.sender,
            fields,
            true,
            command,
            ReactTarget::ReviewComment { id },
            head,
        );
    }
    let Some(issue) = p.issue else {
        return ignore("issue comment without an issue");
    };
    request(
        p.repository,
        p.installation,
        p.sender,
        issue_fields(&issue),
        issue.pull_request.is_some(),
        command,
        ReactTarget::Comment { id },
        None,
    )
}

type Fields = (Option<u64>, Option<String>, Option<String>, Option<String>);

fn issue_fields(issue: &Issue) -> Fields {
    (
        issue.number,
        issue.title.clone(),
        issue.body.clone(),
        issue.html_url.clone(),
    )
}

#[allow(clippy::too_many_arguments)]
fn request(
    repository: Option<Repository>,
    installation: Option<Installation>,
    sender: Option<User>,
    (number, title, body, url): Fields,
    is_pr: bool,
    command: Command,
    react: ReactTarget,
    head: Option<PrHead>,
) -> Decision {
    let Some(repo) = repository.and_then(|r| r.full_name) else {
        return ignore("no repository in the payload");
    };
    let Some(number) = number else {
        return ignore("no issue number in the payload");
    };
    let Some(sender) = sender else {
        return ignore("no sender in the payload");
    };
    Decision::Command(Request {
        repo,
        installation: installation.and_then(|i| i.id),
        number,
        is_pr,
        title: title.unwrap_or_default(),
        body: body.unwrap_or_default(),
        url: url.unwrap_or_default(),
        command,
        sender: sender.login.unwrap_or_default(),
        sender_id: sender.id.unwrap_or_default(),
        react,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> GitHubSettings {
        GitHubSettings::from_lookup(&|_: &str| None).unwrap()
    }

    fn comment_event(body: &str, action: &str, sender_type: &str) -> Value {
        json!({
            "action": action,
            "installation": {"id": 7},
            "repository": {"full_name": "acme/api"},
            "sender": {"login": "ann", "id": 5, "type": sender_type},
            "issue": {"number": 12, "title": "Pager off by one", "body": "Page 2 repeats", "html_url": "https://github.com/acme/api/issues/12"},
            "comment": {"id": 99, "body": body},
        })
    }

    #[test]
    fn a_new_comment_with_the_command_is_a_request() {
        let d = decide(
            "issue_comment",
            &comment_event("/maur fix carefully", "created", "User"),
            &settings(),
        );
        let Decision::Command(r) = d else {
            panic!("{d:?}")
        };
        assert_eq!(r.repo, "acme/api");
        assert_eq!((r.number, r.is_pr, r.installation), (12, false, Some(7)));
        assert_eq!(r.command, Command::Fix("carefully".into()));
        assert_eq!(r.react, ReactTarget::Comment { id: "99".into() });
        assert_eq!((r.sender.as_str(), r.sender_id), ("ann", 5));
    }

    #[test]
    fn edits_bots_and_chatter_are_ignored() {
        for (body, action, kind) in [
            ("/maur fix", "edited", "User"),
            ("/maur fix", "deleted", "User"),
            ("/maur fix", "created", "Bot"),
            ("looks good", "created", "User"),
        ] {
            let d = decide(
                "issue_comment",
                &comment_event(body, action, kind),
                &settings(),
            );
            assert!(
                matches!(d, Decision::Ignore(_)),
                "{body} {action} {kind}: {d:?}"
            );
        }
        assert!(matches!(
            decide("star", &json!({}), &settings()),
            Decision::Ignore(_)
        ));
        assert_eq!(
            decide("ping", &json!({"zen": "x"}), &settings()),
            Decision::Ping
        );
        // Fields of the wrong type are ignored, not an error.
        assert!(matches!(
            decide("issue_comment", &json!({"action": 3}), &settings()),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn the_label_is_a_fix_request_on_the_issue() {
        let mut e = comment_event("", "labeled", "User");
        e["label"] = json!({"name": "Maur"});
        let Decision::Command(r) = decide("issues", &e, &settings()) else {
            panic!()
        };
        assert_eq!(r.command, Command::Fix(String::new()));
        assert_eq!(r.react, ReactTarget::Issue);
        e["label"] = json!({"name": "bug"});
        assert!(matches!(
            decide("issues", &e, &settings()),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn review_comments_carry_the_head() {
        let e = json!({
            "action": "created",
            "repository": {"full_name": "acme/api"},
            "sender": {"login": "ann", "id": 5, "type": "User"},
            "comment": {"id": 3, "body": "/maur fix rename it"},
            "pull_request": {"number": 4, "title": "t", "body": null, "head": {"ref": "feature", "repo": {"full_name": "ann/api"}}},
        });
        let Decision::Command(r) = decide("pull_request_review_comment", &e, &settings()) else {
            panic!()
        };
        assert!(r.is_pr);
        assert_eq!(
            r.head,
            Some(PrHead {
                repo: Some("ann/api".into()),
                branch: "feature".into()
            })
        );
        assert_eq!(r.react, ReactTarget::ReviewComment { id: "3".into() });
    }

    #[test]
    fn installations_list_their_repositories() {
        let e = json!({"action": "created", "installation": {"id": 1, "account": {"login": "acme"}},
                       "repositories": [{"full_name": "acme/api"}, {"full_name": "acme/web"}]});
        assert_eq!(
            decide("installation", &e, &settings()),
            Decision::Installation {
                id: 1,
                account: "acme".into(),
                change: InstallChange::Repositories(vec!["acme/api".into(), "acme/web".into()])
            }
        );
    }
}
