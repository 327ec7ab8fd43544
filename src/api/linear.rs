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
use crate::linear::webhook::{self, Decision, Ticket};
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
    };
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
    let named = repo::resolve(
        &RepoTicket {
            description: &ticket.description,
            attachments: &[],
            team: ticket.team.as_deref(),
        },
        &hosts,
        &config.linear.repos,
        default,
    );
    let Some(named) = named else {
        linear
            .comment(
                &ticket.issue_id,
                &webhook::no_repository(&config.linear.label),
            )
            .await
            .map_err(upstream)?;
        return Ok((StatusCode::OK, json!({"replied": "no repository"}), None));
    };
    let task = new_task(state, &ticket, &named)?;
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

fn new_task(state: &AppState, ticket: &Ticket, named: &str) -> Result<NewTask, ApiError> {
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
        prompt: webhook::prompt(ticket),
        repo_given: named.to_owned(),
        repo,
        repo_branch: None,
        context: json!({"linear": {"issue_id": ticket.issue_id, "identifier": ticket.identifier, "url": ticket.url}}),
        max_attempts: state.config.max_attempts,
        report_to: Some(report_to(&ticket.issue_id)),
    })
}
