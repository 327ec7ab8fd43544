//! `GET /tasks/{id}/events`: Server-Sent Events. History first, then live events, then the
//! stream ends with the task. `Last-Event-ID` resumes after a reconnect.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::tasks::{EventView, load};
use crate::hub::Note;
use crate::store::events;

pub async fn stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before reading history, so nothing written in between is missed.
    let notes = state.hub.subscribe();
    let task = load(&state, &id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(pump(state, task.id, after, notes, tx));
    Ok(Sse::new(ReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::default()))
}

async fn pump(
    state: AppState,
    task_id: Uuid,
    mut after: i32,
    mut notes: broadcast::Receiver<Note>,
    tx: mpsc::Sender<Event>,
) {
    loop {
        match events::since(&state.pool, task_id, after).await {
            Ok(mut batch) => {
                // Nothing new and the task is over: the client has seen the end already (or
                // resumed from an id past it), unless it ended between the two reads. The end
                // and its event are one statement, so reading once more after seeing the end
                // finds the event.
                if batch.is_empty() && task_has_ended(&state, task_id).await {
                    match events::since(&state.pool, task_id, after).await {
                        Ok(tail) if !tail.is_empty() => batch = tail,
                        _ => return,
                    }
                }
                for event in &batch {
                    after = event.seq;
                    let Ok(sse) = Event::default()
                        .id(event.seq.to_string())
                        .event(&event.kind)
                        .json_data(EventView::from(event))
                    else {
                        continue;
                    };
                    if tx.send(sse).await.is_err() {
                        return;
                    }
                    if event.is_terminal() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(task = %task_id, error = %e, "event stream: reading events failed");
            }
        }
        // Wait for a reason to read again.
        loop {
            tokio::select! {
                note = notes.recv() => match note {
                    Ok(Note::Event { task_id: t, .. }) if t == task_id => break,
                    Ok(Note::Event { .. } | Note::Queued) => continue,
                    Ok(Note::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(state.sse_poll) => break,
                _ = tx.closed() => return,
                _ = state.shutdown.cancelled() => return,
            }
        }
    }
}

async fn task_has_ended(state: &AppState, task_id: Uuid) -> bool {
    matches!(
        crate::store::tasks::get(&state.pool, task_id).await,
        Ok(Some(t)) if t.status().is_terminal()
    )
}
