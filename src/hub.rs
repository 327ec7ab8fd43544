//! One LISTEN connection per process, fanned out to everything that waits on the queue:
//! idle worker slots (a task was queued), SSE streams and running tasks (an event was written).
//!
//! Notifications are hints, never the source of truth: whoever wakes re-reads Postgres, and
//! every waiter also polls, so a notification lost while the connection was down costs only
//! latency.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const EVENTS_CHANNEL: &str = "maur_events";
/// Sent by [`Hub::announce_queued`] after new tasks were committed.
pub const QUEUED_CHANNEL: &str = "maur_queued";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A row was appended to `task_events`.
    Event {
        task_id: Uuid,
        seq: i32,
        kind: String,
    },
    /// Tasks were enqueued (their first event is not announced one by one).
    Queued,
    /// Notifications may have been missed (reconnect or a slow receiver): re-read everything.
    Resync,
}

pub struct Hub {
    notes: broadcast::Sender<Note>,
    queued: Notify,
    /// Wakes the announcer task; many enqueues in a burst become one NOTIFY.
    announce: Notify,
}

impl Hub {
    /// Connects and starts listening before returning, so nothing written after `start`
    /// returns can be missed by a subscriber.
    pub async fn start(
        pool: PgPool,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, sqlx::Error> {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener
            .listen_all([EVENTS_CHANNEL, QUEUED_CHANNEL])
            .await?;
        let (notes, _) = broadcast::channel(4096);
        let hub = Arc::new(Self {
            notes,
            queued: Notify::new(),
            announce: Notify::new(),
        });
        tokio::spawn(Arc::clone(&hub).pump(listener, shutdown.clone()));
        tokio::spawn(Arc::clone(&hub).announcer(pool, shutdown));
        Ok(hub)
    }

    /// Tells every worker, in every process, that tasks were committed. Call after enqueue.
    /// At most one NOTIFY is in flight per process; calls made meanwhile share the next one.
    pub fn announce_queued(&self) {
        self.announce.notify_one();
    }

    async fn announcer(self: Arc<Self>, pool: PgPool, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.announce.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            let sent = sqlx::query("SELECT pg_notify($1, '')")
                .bind(QUEUED_CHANNEL)
                .execute(&pool)
                .await;
            if let Err(e) = sent {
                // Workers poll as well; the task waits at most one poll interval.
                tracing::warn!(error = %e, "could not announce queued tasks");
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Note> {
        self.notes.subscribe()
    }

    /// Resolves once after a task became claimable (or a resync); a wake-up that arrives while
    /// nobody waits is kept for the next waiter.
    pub async fn queued(&self) {
        self.queued.notified().await;
    }

    async fn pump(self: Arc<Self>, mut listener: PgListener, shutdown: CancellationToken) {
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                _ = shutdown.cancelled() => return,
            };
            match next {
                Ok(Some(n)) if n.channel() == QUEUED_CHANNEL => {
                    self.queued.notify_one();
                    let _ = self.notes.send(Note::Queued);
                }
                Ok(Some(n)) => {
                    if let Some(note) = parse_event(n.payload()) {
                        // A task went back to the queue (or, for a delayed retry, will; a
                        // wasted claim is cheap).
                        if matches!(&note, Note::Event { kind, .. } if kind == "queued") {
                            self.queued.notify_one();
                        }
                        let _ = self.notes.send(note);
                    }
                }
                // The connection dropped; the next try_recv reconnects. Anything sent meanwhile
                // is gone, so tell everyone to re-read.
                Ok(None) => self.resync(),
                Err(e) => {
                    tracing::warn!(error = %e, "lost the LISTEN connection to Postgres; retrying");
                    self.resync();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    fn resync(&self) {
        self.queued.notify_one();
        let _ = self.notes.send(Note::Resync);
    }
}

/// `"<uuid>:<seq>:<kind>"`, as written by the `maur_notify_event` trigger.
fn parse_event(payload: &str) -> Option<Note> {
    let mut parts = payload.splitn(3, ':');
    let task_id = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let kind = parts.next()?.to_owned();
    Some(Note::Event { task_id, seq, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trigger_payloads() {
        let id = Uuid::now_v7();
        assert_eq!(
            parse_event(&format!("{id}:7:cancel_requested")),
            Some(Note::Event {
                task_id: id,
                seq: 7,
                kind: "cancel_requested".into()
            })
        );
        assert_eq!(parse_event("garbage"), None);
        assert_eq!(parse_event(&format!("{id}:x:queued")), None);
    }
}
