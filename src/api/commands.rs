//! `/maur` commands on forge issues and pull/merge requests, whichever forge they come
//! from: who may ask, the replies, one active task per issue, cancel, retry and status. The
//! forge-specific parts (webhook formats, the API) sit behind the [`Forge`] trait.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::forge::request::{self, Request};
use crate::forge::{Forge, Thread};
use crate::github::command::{self, Command};
use crate::repo::RepoRef;
use crate::report::forge_sink::report_to;
use crate::store;
use crate::store::deliveries::{self, Claim};
use crate::store::tasks::Enqueued;
use crate::task::{NewTask, Source, Task, TaskStatus};

/// What a webhook handler answers: status, JSON body, and the task it concerns.
pub type Acted = (StatusCode, Value, Option<Uuid>);

/// How long one delivery may take to handle (GitHub gives up after ten seconds).
const ACT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

/// Acts on a webhook delivery once: a delivery id already handled is answered with what
/// happened the first time; one that fails or runs past the deadline is released, so the
/// forge's "redeliver" works.
pub async fn once_per_delivery(
    state: &AppState,
    source: &str,
    delivery: Option<String>,
    act: impl std::future::Future<Output = Result<Acted, ApiError>>,
) -> Result<Response, ApiError> {
    if let Some(id) = &delivery
        && let Claim::Seen(seen) = deliveries::claim(&state.pool, source, id).await?
    {
        return Ok((
            StatusCode::OK,
            Json(json!({"duplicate": true, "delivery": id, "task_id": seen.task_id, "outcome": seen.outcome})),
        )
            .into_response());
    }
    let acted = match tokio::time::timeout(ACT_DEADLINE, act).await {
        Ok(acted) => acted,
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the forge answered too slowly to handle this delivery in time; nothing was done, redeliver it",
        )),
    };
    let (status, answer, task_id) = match acted {
        Ok(acted) => acted,
        Err(e) => {
            if let Some(id) = &delivery {
                deliveries::release(&state.pool, source, id).await?;
            }
            return Err(e);
        }
    };
    if let Some(id) = &delivery {
        let outcome = answer
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .unwrap_or_default();
        deliveries::finish(&state.pool, source, id, task_id, &outcome).await?;
    }
    Ok((status, Json(answer)).into_response())
}

/// A forge as a way in for commands.
pub struct Door {
    pub forge: Arc<dyn Forge>,
    pub source: Source,
    /// The label that means `fix` on this forge (for the help text).
    pub label: String,
}

/// The forge could not be asked (permissions, the pull request): 502, and the delivery is
/// not recorded, so redelivering it later works.
fn upstream(forge: &dyn Forge, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!("could not reach {}: {e}", forge.display_name()),
    )
}

fn thread(req: &Request) -> Thread {
    Thread {
        repo: req.repo.clone(),
        number: req.number,
        change: req.is_pr,
    }
}

/// One issue or pull request has at most one active task.
pub fn dedup_key(forge: &dyn Forge, req: &Request) -> String {
    // GitLab numbers merge requests apart from issues (`!4` is not `#4`); GitHub does not.
    let sign = if req.is_pr && forge.numbers_changes_apart() {
        '!'
    } else {
        '#'
    };
    format!(
        "{}:{}{sign}{}",
        forge.name(),
        req.repo.to_ascii_lowercase(),
        req.number
    )
}

async fn reply(forge: &dyn Forge, req: &Request, text: &str) {
    if let Err(e) = forge.comment(&thread(req), text).await {
        tracing::warn!(forge = forge.name(), repo = %req.repo, number = req.number, error = %e, "could not reply");
    }
}

/// Answers a `/maur` command (or a label) on an issue or pull/merge request of `door`'s
/// forge: the same rules and replies whichever forge it came from.
pub async fn handle(state: &AppState, door: &Door, req: Request) -> Result<Acted, ApiError> {
    let forge = door.forge.as_ref();
    let command_word = &state.config.github.command;
    if matches!(req.command, Command::Help | Command::Unknown(_)) {
        let mut text = command::help(command_word, &door.label);
        if let Command::Unknown(verb) = &req.command {
            let verb = crate::report::render::one_line(verb).replace('`', "'");
            text = format!("I don't know `{verb}`.\n\n{text}");
        }
        reply(forge, &req, &text).await;
        return Ok((StatusCode::OK, json!({"replied": "help"}), None));
    }
    let key = dedup_key(forge, &req);
    if req.command == Command::Status {
        let latest = store::tasks::latest_for_key(&state.pool, &key).await?;
        let text = match latest {
            Some(task) => status_line(state, &task).await?,
            None => format!(
                "No maur task has run here yet. Comment `{} fix` to start one.",
                command_word
            ),
        };
        reply(forge, &req, &text).await;
        return Ok((StatusCode::OK, json!({"replied": "status"}), None));
    }
    // Everything else changes something: only people with write access may.
    let allowed = forge
        .can_write(&req.repo, &req.sender, req.sender_id)
        .await
        .map_err(|e| upstream(forge, e))?;
    if !allowed {
        reply(
            forge,
            &req,
            &format!(
                "Sorry @{}, only people with write access to {} ({}) can ask maur for work.",
                req.sender,
                req.repo,
                forge.write_roles()
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
                        command_word
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
                    command_word
                );
                reply(forge, &req, &text).await;
                return Ok((
                    StatusCode::OK,
                    json!({"replied": "already succeeded"}),
                    None,
                ));
            }
            let mut context = last.context.clone();
            context["requested_by"] = co_author(forge, &req);
            let mut task = base_task(state, door, &req, last.prompt.clone(), context)?;
            task.title = last.title.clone();
            task.repo_branch = last.repo_branch.clone();
            enqueue(state, forge, &req, task).await
        }
        Command::Fix(instructions) => {
            let task = match fix_task(state, door, &req, &instructions).await? {
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
    forge: &dyn Forge,
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
    forge: &dyn Forge,
    req: &Request,
    task: NewTask,
) -> Result<Acted, ApiError> {
    match store::tasks::enqueue(&state.pool, &task).await? {
        Enqueued::Created(id) => {
            state.hub.announce_queued();
            tracing::info!(task = %id, forge = forge.name(), repo = %req.repo, number = req.number, "forge task queued");
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

fn co_author(forge: &dyn Forge, req: &Request) -> Value {
    json!({"name": req.sender, "email": forge.noreply_email(&req.sender, req.sender_id)})
}

fn base_task(
    state: &AppState,
    door: &Door,
    req: &Request,
    prompt: String,
    context: Value,
) -> Result<NewTask, ApiError> {
    // As the forge spells it unambiguously: with GitHub and GitLab both configured, a bare
    // `group/name` would mean GitHub.
    let given = door.forge.repo_address(&req.repo);
    let repo =
        RepoRef::parse(&given).map_err(|e| ApiError::unprocessable("repository", e.to_string()))?;
    let title = if req.title.trim().is_empty() {
        format!("{}#{}", req.repo, req.number)
    } else {
        req.title.trim().chars().take(200).collect()
    };
    Ok(NewTask {
        source: door.source,
        dedup_key: Some(dedup_key(door.forge.as_ref(), req)),
        title,
        prompt,
        repo_given: given,
        repo,
        repo_branch: None,
        context,
        max_attempts: state.config.max_attempts,
        report_to: Some(report_to(door.forge.name(), &thread(req), Some(&req.react))),
    })
}

fn forge_context(forge: &dyn Forge, req: &Request) -> Value {
    json!({
        forge.name(): {"repo": req.repo, "number": req.number, "is_pr": req.is_pr, "url": req.url, "installation": req.installation},
        "requested_by": co_author(forge, req),
    })
}

/// The task for `/maur fix`, or the reply that says why there is none.
async fn fix_task(
    state: &AppState,
    door: &Door,
    req: &Request,
    instructions: &str,
) -> Result<Result<NewTask, String>, ApiError> {
    let forge = door.forge.as_ref();
    let mut context = forge_context(forge, req);
    if !req.is_pr {
        context["issue_number"] = json!(req.number);
        let prompt = request::issue_prompt(forge.display_name(), req, instructions);
        return Ok(Ok(base_task(state, door, req, prompt, context)?));
    }
    let head = match &req.head {
        Some(head) => head.clone(),
        None => forge
            .change_head(&req.repo, req.number)
            .await
            .map_err(|e| upstream(forge, e))?,
    };
    if head.branch.is_empty() {
        return Ok(Err(format!(
            "{} did not say which branch this {} comes from, so maur cannot push to it.",
            forge.display_name(),
            request::change_word(forge.display_name())
        )));
    }
    let same_repo = head
        .repo
        .as_deref()
        .is_some_and(|r| r.eq_ignore_ascii_case(&req.repo));
    if !same_repo {
        return Ok(Err(format!(
            "This {}'s branch lives in {}, and maur can only push to branches in {}. \
             Ask for the fix on an issue, or push the branch here.",
            request::change_word(forge.display_name()),
            head.repo.as_deref().unwrap_or("a deleted fork"),
            req.repo
        )));
    }
    let conversation = forge
        .conversation(&req.repo, req.number)
        .await
        .map_err(|e| upstream(forge, e))?;
    let prompt = request::change_prompt(
        forge.display_name(),
        req,
        &head.branch,
        &conversation,
        instructions,
    );
    context["work_branch"] = json!(head.branch);
    Ok(Ok(base_task(state, door, req, prompt, context)?))
}
