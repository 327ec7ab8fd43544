//! `POST /webhooks/github`: signed deliveries from the GitHub App, and the setup flow that
//! registers the App.
//!
//! The signature is checked over the raw bytes before anything parses them. A delivery id
//! that was already handled is answered from `webhook_deliveries`, so GitHub's redelivery
//! never starts a second task.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::AppState;
use super::commands::{self, Acted, Door};
use super::error::ApiError;
use super::extract::RawBody;
use crate::github::forge::GitHubForge;
use crate::github::signature;
use crate::github::webhook::{self, Decision, InstallChange};
use crate::store;
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
    let decision = webhook::decide(&event, &payload, settings);
    commands::once_per_delivery(&state, SOURCE, delivery, act(&state, &forge, decision)).await
}

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
