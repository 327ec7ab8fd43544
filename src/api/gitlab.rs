//! `POST /webhooks/gitlab`: notes and issue events from a GitLab project or group hook.
//!
//! `X-Gitlab-Token` must equal one of `GITLAB_WEBHOOK_SECRET` (compared in constant time)
//! before the body is parsed; `X-Gitlab-Event-UUID` (or `Idempotency-Key`) makes a
//! redelivery answer with what the first delivery did.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::AppState;
use super::commands::{self, Acted, Door};
use super::error::ApiError;
use super::extract::RawBody;
use crate::gitlab::forge::GitLabForge;
use crate::gitlab::webhook::{self, Decision};
use crate::task::Source;

const SOURCE: &str = "gitlab";

pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let settings = &state.config.gitlab;
    let Some(forge) = state.gitlab.clone() else {
        return Err(ApiError::not_found(
            "GitLab webhooks are not enabled: set GITLAB_TOKEN and GITLAB_WEBHOOK_SECRET",
        ));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let presented = header("x-gitlab-token")
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing X-Gitlab-Token header"))?;
    // Every secret is compared, so timing does not tell which one (or how much) matched.
    let matched = settings
        .webhook_secrets
        .iter()
        .fold(subtle::Choice::from(0), |acc, s| {
            acc | s.expose_secret().as_bytes().ct_eq(presented.as_bytes())
        });
    if !bool::from(matched) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "X-Gitlab-Token does not match GITLAB_WEBHOOK_SECRET",
        ));
    }
    let event = header("x-gitlab-event")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("missing X-Gitlab-Event header").with("field", "X-Gitlab-Event")
        })?
        .to_owned();
    let delivery = header("x-gitlab-event-uuid")
        .or_else(|| header("idempotency-key"))
        .map(str::to_owned);
    let payload: Value = super::extract::parse(&body)?;
    let decision = webhook::decide(
        &event,
        &payload,
        &state.config.github.command,
        &settings.label,
    );
    commands::once_per_delivery(&state, SOURCE, delivery, act(&state, forge, decision)).await
}

async fn act(
    state: &AppState,
    forge: std::sync::Arc<GitLabForge>,
    decision: Decision,
) -> Result<Acted, ApiError> {
    match decision {
        Decision::Test => Ok((StatusCode::OK, json!({"test": "ok"}), None)),
        Decision::Ignore(why) => Ok((StatusCode::ACCEPTED, json!({"ignored": why}), None)),
        Decision::Command(req) => {
            // maur's own notes (its progress note quoting a command, say) never count; if
            // GitLab cannot say who the bot is, nothing is done (the note can be redelivered).
            let bot = forge.gl.bot_user().await.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("could not reach GitLab: {e}"),
                )
            })?;
            if bot.id == req.sender_id {
                return Ok((
                    StatusCode::ACCEPTED,
                    json!({"ignored": "maur's own note"}),
                    None,
                ));
            }
            let door = Door {
                forge,
                source: Source::Gitlab,
                label: state.config.gitlab.label.clone(),
            };
            commands::handle(state, &door, *req).await
        }
    }
}
