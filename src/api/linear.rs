//! `POST /webhooks/linear`: an issue labelled `maur` in Linear becomes a task.
//!
//! `Linear-Signature` (hex HMAC-SHA256 of the raw body) is checked before anything else,
//! then the payload's `webhookTimestamp` must be within a minute of now (no replays).
//! `Linear-Delivery` makes a redelivery answer with what the first one did.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::AppState;
use super::commands::{self, Acted};
use super::error::ApiError;
use super::extract::RawBody;
use crate::linear::client::Linear;
use crate::linear::repo::{self, Hosts, Ticket as RepoTicket};
use crate::linear::signature;
use crate::linear::sink::report_to;
use crate::linear::webhook::{self, Decision, Session, Ticket};
use crate::repo::RepoRef;
use crate::store::tasks::Enqueued;
use crate::task::{NewTask, Source};

const SOURCE: &str = "linear";

pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let settings = &state.config.linear;
    let Some(linear) = state.linear.clone() else {
        return Err(ApiError::not_found(
            "Linear webhooks are not enabled: set LINEAR_WEBHOOK_SECRET and LINEAR_API_KEY",
        ));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    signature::verify(&settings.webhook_secrets, &body, header("linear-signature"))
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let payload: Value = super::extract::parse(&body)?;
    signature::fresh(&payload, chrono::Utc::now().timestamp_millis())
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let delivery = header("linear-delivery").map(str::to_owned);
    let decision = webhook::decide(&payload, &settings.label);
    commands::once_per_delivery(&state, SOURCE, delivery, act(&state, &linear, decision)).await
}

fn upstream(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!("could not reach Linear: {e}"),
    )
}

async fn act(state: &AppState, linear: &Linear, decision: Decision) -> Result<Acted, ApiError> {
    let ticket = match decision {
        Decision::Ignore(why) => return Ok((StatusCode::ACCEPTED, json!({"ignored": why}), None)),
        Decision::Start(ticket) => ticket,
        Decision::Agent(session) => return agent(state, linear, session).await,
    };
    // Links attached to the issue come first; without them, the description decides.
    let attachments = linear
        .attachments(&ticket.issue_id)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read the issue's attachments");
            Vec::new()
        });
    let Some(named) = resolve(state, &ticket, "", &attachments) else {
        linear
            .comment(
                &ticket.issue_id,
                &webhook::no_repository(&state.config.linear.label),
            )
            .await
            .map_err(upstream)?;
        return Ok((StatusCode::OK, json!({"replied": "no repository"}), None));
    };
    let task = new_task(state, &ticket, &named, webhook::prompt(&ticket), None)?;
    match crate::store::tasks::enqueue(&state.pool, &task).await? {
        Enqueued::Created(id) => {
            state.hub.announce_queued();
            tracing::info!(task = %id, issue = %ticket.identifier, repo = %named, "Linear task queued");
            Ok((
                StatusCode::ACCEPTED,
                json!({"task_id": id, "status": "queued"}),
                Some(id),
            ))
        }
        Enqueued::Duplicate(active) => {
            linear
                .comment(
                    &ticket.issue_id,
                    &format!("maur is already working on this issue (task `{active}`)."),
                )
                .await
                .map_err(upstream)?;
            Ok((
                StatusCode::OK,
                json!({"duplicate": true, "task_id": active}),
                Some(active),
            ))
        }
    }
}

/// The repository a ticket means (its description and, for a session, Linear's context).
fn resolve(
    state: &AppState,
    ticket: &Ticket,
    more: &str,
    attachments: &[String],
) -> Option<String> {
    let config = &state.config;
    let hosts = Hosts {
        github: config
            .github
            .app
            .as_ref()
            .map(|_| config.github.web_url.as_str()),
        gitlab: config
            .gitlab
            .token
            .as_ref()
            .map(|_| config.gitlab.url.as_str()),
    };
    let default = config.default_repo.as_ref().map(|r| r.url.as_str());
    let text = format!("{}\n{more}", ticket.description);
    repo::resolve(
        &RepoTicket {
            description: &text,
            attachments,
            team: ticket.team.as_deref(),
        },
        &hosts,
        &config.linear.repos,
        default,
    )
}

/// maur as a Linear agent: a new session starts a task, a follow-up message continues the
/// last one's branch. Progress goes back as activities (see `LinearSink`).
async fn agent(state: &AppState, linear: &Linear, session: Session) -> Result<Acted, ApiError> {
    let say = |kind: &'static str, body: String| {
        let sid = session.session_id.clone();
        async move {
            linear
                .activity(&sid, json!({"type": kind, "body": body}))
                .await
                .map_err(upstream)
        }
    };
    let Some(named) = resolve(state, &session.ticket, &session.context, &[]) else {
        say("error", webhook::no_repository(&state.config.linear.label)).await?;
        return Ok((StatusCode::OK, json!({"replied": "no repository"}), None));
    };
    let key = format!("linear:{}", session.ticket.issue_id);
    let mut task = new_task(
        state,
        &session.ticket,
        &named,
        webhook::session_prompt(&session),
        Some(&session.session_id),
    )?;
    if let Some(message) = &session.follow_up {
        let last = crate::store::tasks::latest_for_key(&state.pool, &key).await?;
        if let Some(last) = &last
            && !last.status().is_terminal()
        {
            say(
                "response",
                format!(
                    "Still working on task `{}`; ask again when it is done.",
                    last.id
                ),
            )
            .await?;
            return Ok((
                StatusCode::OK,
                json!({"duplicate": true, "task_id": last.id}),
                Some(last.id),
            ));
        }
        // Continue where the last task left off: its branch, its prompt, and the new words.
        if let Some(last) = last.filter(|l| l.branch.is_some()) {
            task.prompt = format!(
                "{}\n\nFollow-up request: {message}\n",
                last.prompt.trim_end()
            );
            task.context["work_branch"] = json!(last.branch);
        } else {
            task.prompt = format!(
                "{}\n\nFollow-up request: {message}\n",
                task.prompt.trim_end()
            );
        }
    }
    match crate::store::tasks::enqueue(&state.pool, &task).await? {
        Enqueued::Created(id) => {
            state.hub.announce_queued();
            tracing::info!(task = %id, session = %session.session_id, repo = %named, "Linear agent task queued");
            if let Some(public) = &state.config.public_url
                && let Err(e) = linear
                    .session_url(&session.session_id, &format!("{public}/tasks/{id}"))
                    .await
            {
                tracing::warn!(error = %e, "could not set the session's external URL");
            }
            Ok((
                StatusCode::ACCEPTED,
                json!({"task_id": id, "status": "queued"}),
                Some(id),
            ))
        }
        Enqueued::Duplicate(active) => {
            say(
                "response",
                format!("Already working on this issue (task `{active}`)."),
            )
            .await?;
            Ok((
                StatusCode::OK,
                json!({"duplicate": true, "task_id": active}),
                Some(active),
            ))
        }
    }
}

fn new_task(
    state: &AppState,
    ticket: &Ticket,
    named: &str,
    prompt: String,
    session: Option<&str>,
) -> Result<NewTask, ApiError> {
    let repo = RepoRef::parse(named).map_err(|e| {
        ApiError::unprocessable("repository", format!("{e} (the issue names {named:?})"))
    })?;
    let title = if ticket.title.trim().is_empty() {
        ticket.identifier.clone()
    } else {
        ticket.title.trim().chars().take(200).collect()
    };
    Ok(NewTask {
        source: Source::Linear,
        dedup_key: Some(format!("linear:{}", ticket.issue_id)),
        title,
        prompt,
        repo_given: named.to_owned(),
        repo,
        repo_branch: None,
        context: json!({"linear": {"issue_id": ticket.issue_id, "identifier": ticket.identifier, "url": ticket.url, "session_id": session}}),
        max_attempts: state.config.max_attempts,
        report_to: Some(report_to(&ticket.issue_id, session)),
    })
}
