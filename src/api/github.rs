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
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::RawBody;
use crate::forge::{Forge, ForgeError, Thread};
use crate::github::client::{GitHubError, Scope};
use crate::github::command::{self, Command};
use crate::github::forge::GitHubForge;
use crate::github::signature;
use crate::github::webhook::{self, Decision, InstallChange, PrHead, Request};
use crate::repo::RepoRef;
use crate::report::forge_sink::report_to;
use crate::store;
use crate::store::deliveries::{self, Claim};
use crate::store::tasks::Enqueued;
use crate::task::{NewTask, Source, Task, TaskStatus};

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

type Acted = (StatusCode, Value, Option<Uuid>);

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
        Decision::Command(req) => command(state, forge, req).await,
    }
}

/// GitHub could not be asked (permissions, the pull request): 502, and the delivery is
/// not recorded, so redelivering it later works.
fn upstream(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!("could not reach GitHub: {e}"),
    )
}

fn thread(req: &Request) -> Thread {
    Thread {
        repo: req.repo.clone(),
        number: req.number,
    }
}

/// One issue or pull request has at most one active task.
pub fn dedup_key(repo: &str, number: u64) -> String {
    format!("github:{}#{number}", repo.to_ascii_lowercase())
}

async fn reply(forge: &GitHubForge, req: &Request, text: &str) {
    if let Err(e) = forge.comment(&thread(req), text).await {
        tracing::warn!(repo = %req.repo, number = req.number, error = %e, "could not reply on GitHub");
    }
}

async fn command(
    state: &AppState,
    forge: &Arc<GitHubForge>,
    req: Request,
) -> Result<Acted, ApiError> {
    let settings = &state.config.github;
    if matches!(req.command, Command::Help | Command::Unknown(_)) {
        let mut text = command::help(&settings.command, &settings.label);
        if let Command::Unknown(verb) = &req.command {
            let verb = crate::report::render::one_line(verb).replace('`', "'");
            text = format!("I don't know `{verb}`.\n\n{text}");
        }
        reply(forge, &req, &text).await;
        return Ok((StatusCode::OK, json!({"replied": "help"}), None));
    }
    let key = dedup_key(&req.repo, req.number);
    if req.command == Command::Status {
        let latest = store::tasks::latest_for_key(&state.pool, &key).await?;
        let text = match latest {
            Some(task) => status_line(state, &task).await?,
            None => format!(
                "No maur task has run here yet. Comment `{} fix` to start one.",
                settings.command
            ),
        };
        reply(forge, &req, &text).await;
        return Ok((StatusCode::OK, json!({"replied": "status"}), None));
    }
    // Everything else changes something: only people with write access may.
    let allowed = forge
        .can_write(&req.repo, &req.sender)
        .await
        .map_err(upstream)?;
    if !allowed {
        reply(
            forge,
            &req,
            &format!(
                "Sorry @{}, only people with write access to {} (write, maintain or admin) can ask maur for work.",
                req.sender, req.repo
            ),
        )
        .await;
        return Ok((StatusCode::OK, json!({"replied": "no write access"}), None));
    }
    match req.command.clone() {
        Command::Cancel => cancel(state, forge, &req, &key).await,
        Command::Retry => {
            let Some(last) = store::tasks::latest_for_key(&state.pool, &key).await? else {
                reply(
                    forge,
                    &req,
                    &format!(
                        "There is nothing to retry here. Comment `{} fix` to start.",
                        settings.command
                    ),
                )
                .await;
                return Ok((StatusCode::OK, json!({"replied": "nothing to retry"}), None));
            };
            if last.status() == TaskStatus::Succeeded {
                // Running finished work again would open a second pull request.
                let text = format!(
                    "The last task here succeeded ({}). Comment `{} fix` with what should change to ask again.",
                    last.pr_url.as_deref().unwrap_or("no changes were needed"),
                    settings.command
                );
                reply(forge, &req, &text).await;
                return Ok((
                    StatusCode::OK,
                    json!({"replied": "already succeeded"}),
                    None,
                ));
            }
            let mut context = last.context.clone();
            context["requested_by"] = co_author(&req);
            let mut task = base_task(state, &req, last.prompt.clone(), context)?;
            task.title = last.title.clone();
            task.repo_branch = last.repo_branch.clone();
            enqueue(state, forge, &req, task).await
        }
        Command::Fix(instructions) => {
            let task = match fix_task(state, forge, &req, &instructions).await? {
                Ok(task) => task,
                Err(refusal) => {
                    reply(forge, &req, &refusal).await;
                    return Ok((StatusCode::OK, json!({"replied": "refused"}), None));
                }
            };
            enqueue(state, forge, &req, task).await
        }
        Command::Help | Command::Unknown(_) | Command::Status => unreachable!("answered above"),
    }
}

async fn cancel(
    state: &AppState,
    forge: &GitHubForge,
    req: &Request,
    key: &str,
) -> Result<Acted, ApiError> {
    let active = store::tasks::latest_for_key(&state.pool, key)
        .await?
        .filter(|t| !t.status().is_terminal());
    let Some(task) = active else {
        reply(
            forge,
            req,
            "Nothing is running here, so there is nothing to cancel.",
        )
        .await;
        return Ok((
            StatusCode::OK,
            json!({"replied": "nothing to cancel"}),
            None,
        ));
    };
    store::tasks::request_cancel(&state.pool, task.id, &req.sender).await?;
    if let Err(e) = forge.react(&thread(req), &req.react).await {
        tracing::warn!(error = %e, "could not react to the cancel");
    }
    Ok((StatusCode::OK, json!({"cancelled": task.id}), Some(task.id)))
}

async fn enqueue(
    state: &AppState,
    forge: &GitHubForge,
    req: &Request,
    task: NewTask,
) -> Result<Acted, ApiError> {
    match store::tasks::enqueue(&state.pool, &task).await? {
        Enqueued::Created(id) => {
            state.hub.announce_queued();
            tracing::info!(task = %id, repo = %req.repo, number = req.number, "GitHub task queued");
            Ok((
                StatusCode::ACCEPTED,
                json!({"task_id": id, "status": "queued"}),
                Some(id),
            ))
        }
        Enqueued::Duplicate(active) => {
            let link = progress_link(state, active).await?;
            reply(
                forge,
                req,
                &format!(
                    "maur is already working on this: {link}. Comment `{} cancel` to stop it.",
                    state.config.github.command
                ),
            )
            .await;
            Ok((
                StatusCode::OK,
                json!({"duplicate": true, "task_id": active}),
                Some(active),
            ))
        }
    }
}

async fn progress_link(state: &AppState, id: Uuid) -> Result<String, ApiError> {
    let state_of = store::reports::state_of(&state.pool, id).await?;
    Ok(
        match state_of.as_ref().and_then(|s| s["comment_url"].as_str()) {
            Some(url) if !url.is_empty() => format!("[progress]({url})"),
            _ => format!("task `{id}`"),
        },
    )
}

async fn status_line(state: &AppState, task: &Task) -> Result<String, ApiError> {
    let link = progress_link(state, task.id).await?;
    Ok(match task.status() {
        TaskStatus::Queued => format!("Queued, waiting for a worker ({link})."),
        TaskStatus::Running => format!(
            "Running, attempt {} of {} ({link}).",
            task.attempts, task.max_attempts
        ),
        TaskStatus::Succeeded => match &task.pr_url {
            Some(url) => format!("Done: {url} ({link})."),
            None => format!("Done, no changes were needed ({link})."),
        },
        TaskStatus::Failed => format!(
            "Failed: {} ({link}). Comment `{} retry` to run it again.",
            crate::report::render::one_line(task.error.as_deref().unwrap_or("unknown error")),
            state.config.github.command
        ),
        TaskStatus::Cancelled => format!("Cancelled ({link})."),
    })
}

fn co_author(req: &Request) -> Value {
    json!({"name": req.sender, "email": format!("{}+{}@users.noreply.github.com", req.sender_id, req.sender)})
}

fn base_task(
    state: &AppState,
    req: &Request,
    prompt: String,
    context: Value,
) -> Result<NewTask, ApiError> {
    let repo = RepoRef::parse(&req.repo)
        .map_err(|e| ApiError::unprocessable("repository", e.to_string()))?;
    let title = if req.title.trim().is_empty() {
        format!("{}#{}", req.repo, req.number)
    } else {
        req.title.trim().chars().take(200).collect()
    };
    Ok(NewTask {
        source: Source::Github,
        dedup_key: Some(dedup_key(&req.repo, req.number)),
        title,
        prompt,
        repo_given: req.repo.clone(),
        repo,
        repo_branch: None,
        context,
        max_attempts: state.config.max_attempts,
        report_to: Some(report_to(SOURCE, &thread(req), Some(&req.react))),
    })
}

fn github_context(req: &Request) -> Value {
    json!({
        "github": {"repo": req.repo, "number": req.number, "is_pr": req.is_pr, "url": req.url, "installation": req.installation},
        "requested_by": co_author(req),
    })
}

/// The task for `/maur fix`, or the reply that says why there is none.
async fn fix_task(
    state: &AppState,
    forge: &GitHubForge,
    req: &Request,
    instructions: &str,
) -> Result<Result<NewTask, String>, ApiError> {
    let mut context = github_context(req);
    if !req.is_pr {
        context["issue_number"] = json!(req.number);
        let prompt = webhook::issue_prompt(req, instructions);
        return Ok(Ok(base_task(state, req, prompt, context)?));
    }
    let head = match &req.head {
        Some(head) => head.clone(),
        None => pull_request_head(forge, req).await.map_err(upstream)?,
    };
    if head.branch.is_empty() {
        return Ok(Err(
            "GitHub did not say which branch this pull request comes from, so maur cannot push to it."
                .to_owned(),
        ));
    }
    let same_repo = head
        .repo
        .as_deref()
        .is_some_and(|r| r.eq_ignore_ascii_case(&req.repo));
    if !same_repo {
        return Ok(Err(format!(
            "This pull request's branch lives in {}, and maur can only push to branches in {}. \
             Ask for the fix on an issue, or push the branch here.",
            head.repo.as_deref().unwrap_or("a deleted fork"),
            req.repo
        )));
    }
    let conversation = conversation(forge, req).await.map_err(upstream)?;
    let prompt = webhook::pull_request_prompt(req, &head.branch, &conversation, instructions);
    context["work_branch"] = json!(head.branch);
    Ok(Ok(base_task(state, req, prompt, context)?))
}

async fn pull_request_head(forge: &GitHubForge, req: &Request) -> Result<PrHead, GitHubError> {
    let pr = forge
        .gh
        .call(
            Method::GET,
            &format!("/repos/{}/pulls/{}", req.repo, req.number),
            None,
            &req.repo,
            Scope::Read,
        )
        .await?;
    Ok(PrHead {
        repo: pr.body["head"]["repo"]["full_name"]
            .as_str()
            .map(str::to_owned),
        branch: pr.body["head"]["ref"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// The pull request's conversation, oldest first: its comments, its reviews and the review
/// comments on the diff (with file and line). Of a long thread, the first and the last
/// page of each: the newest words matter most.
async fn conversation(
    forge: &GitHubForge,
    req: &Request,
) -> Result<Vec<(String, String)>, GitHubError> {
    let (repo, n) = (&req.repo, req.number);
    let mut said: Vec<(String, String, String)> = Vec::new();
    for path in [
        format!("/repos/{repo}/issues/{n}/comments?per_page=100"),
        format!("/repos/{repo}/pulls/{n}/reviews?per_page=100"),
        format!("/repos/{repo}/pulls/{n}/comments?per_page=100"),
    ] {
        let first = forge
            .gh
            .call(Method::GET, &path, None, repo, Scope::Read)
            .await?;
        let mut pages = vec![first.body.clone()];
        if let Some(last) = first.last_page(&forge.gh.api_url) {
            pages.push(
                forge
                    .gh
                    .call(Method::GET, &last, None, repo, Scope::Read)
                    .await?
                    .body,
            );
        }
        let mut seen = std::collections::HashSet::new();
        for c in pages.iter().filter_map(|p| p.as_array()).flatten() {
            if !seen.insert(c["id"].as_i64()) {
                continue;
            }
            let body = c["body"].as_str().unwrap_or_default().trim();
            if body.is_empty() {
                continue;
            }
            let who = c["user"]["login"].as_str().unwrap_or("someone").to_owned();
            let when = c["created_at"]
                .as_str()
                .or(c["submitted_at"].as_str())
                .unwrap_or_default()
                .to_owned();
            let text = match c["path"].as_str() {
                Some(file) => match c["line"].as_u64().or(c["original_line"].as_u64()) {
                    Some(line) => format!("(on {file}:{line}) {body}"),
                    None => format!("(on {file}) {body}"),
                },
                None => body.to_owned(),
            };
            said.push((when, who, text));
        }
    }
    // RFC 3339 times in UTC sort as text.
    said.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(said.into_iter().map(|(_, who, text)| (who, text)).collect())
}

impl From<ForgeError> for ApiError {
    fn from(e: ForgeError) -> Self {
        upstream(e)
    }
}
