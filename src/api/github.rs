//! `POST /webhooks/github`: signed deliveries from the GitHub App, and the setup flow that
//! registers the App.
//!
//! The signature is checked over the raw bytes before anything parses them. A delivery id
//! that was already handled is answered from `webhook_deliveries`, so GitHub's redelivery
//! never starts a second task.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::commands::{self, Acted, Door};
use super::error::ApiError;
use super::extract::RawBody;
use crate::github::forge::GitHubForge;
use crate::github::signature;
use crate::github::webhook::{self, Decision, InstallChange};
use crate::store;
use crate::store::deliveries::{self, Claim};
use crate::task::Source;

const SOURCE: &str = "github";

pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let settings = &state.config.github;
    let (Some(app), Some(forge)) = (settings.app.as_ref(), state.github.clone()) else {
        return Err(ApiError::not_found(
            "GitHub webhooks are not enabled: set GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY and GITHUB_WEBHOOK_SECRET (or open /github/setup)",
        ));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    signature::verify(&app.webhook_secrets, &body, header("x-hub-signature-256"))
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let event = header("x-github-event")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("missing X-GitHub-Event header").with("field", "X-GitHub-Event")
        })?
        .to_owned();
    let delivery = header("x-github-delivery").map(str::to_owned);
    let payload: Value = super::extract::parse(&body)?;
    if let Some(id) = &delivery
        && let Claim::Seen(seen) = deliveries::claim(&state.pool, SOURCE, id).await?
    {
        return Ok((
            StatusCode::OK,
            Json(json!({"duplicate": true, "delivery": id, "task_id": seen.task_id, "outcome": seen.outcome})),
        )
            .into_response());
    }
    let decision = webhook::decide(&event, &payload, settings);
    // GitHub waits ten seconds for an answer; give up before that and let it be redelivered.
    let acted = match tokio::time::timeout(ACT_DEADLINE, act(&state, &forge, decision)).await {
        Ok(acted) => acted,
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "GitHub answered too slowly to handle this delivery in time; nothing was done, redeliver it",
        )),
    };
    let (status, answer, task_id) = match acted {
        Ok(acted) => acted,
        Err(e) => {
            if let Some(id) = &delivery {
                deliveries::release(&state.pool, SOURCE, id).await?;
            }
            return Err(e);
        }
    };
    if let Some(id) = &delivery {
        let outcome = answer
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .unwrap_or_default();
        deliveries::finish(&state.pool, SOURCE, id, task_id, &outcome).await?;
    }
    Ok((status, Json(answer)).into_response())
}

/// How long one delivery may take to handle (GitHub gives up after ten seconds).
const ACT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

async fn act(
    state: &AppState,
    forge: &Arc<GitHubForge>,
    decision: Decision,
) -> Result<Acted, ApiError> {
    match decision {
        Decision::Ping => Ok((StatusCode::OK, json!({"pong": true}), None)),
        Decision::Ignore(why) => Ok((StatusCode::ACCEPTED, json!({"ignored": why}), None)),
        Decision::Installation {
            id,
            account,
            change,
        } => {
            let pool = &state.pool;
            match &change {
                InstallChange::Repositories(repos) => {
                    store::github::upsert_installation(pool, id, &account, Some(repos)).await?
                }
                InstallChange::Added { added, removed } => {
                    store::github::change_repositories(pool, id, &account, added, removed).await?
                }
                InstallChange::Deleted => store::github::delete_installation(pool, id).await?,
                InstallChange::Suspended(s) => store::github::set_suspended(pool, id, *s).await?,
            }
            tracing::info!(
                installation = id,
                account,
                ?change,
                "GitHub installation recorded"
            );
            forge.gh.forget_installations().await;
            Ok((StatusCode::OK, json!({"installation": id}), None))
        }
        Decision::Command(req) => {
            let door = Door {
                forge: forge.clone(),
                source: Source::Github,
                label: state.config.github.label.clone(),
            };
            commands::handle(state, &door, req).await
        }
    }
}
