//! `GET /tasks/{id}/events`: history, then live events, then the end of the stream.

mod support;

use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use support::pipelines::{Blocks, Succeeds};
use support::{TOKEN, TestApp};

/// One parsed `text/event-stream` message.
#[derive(Debug)]
struct Sse {
    id: String,
    event: String,
    data: Value,
}

/// Reads a whole SSE response until the server ends it (hang-guarded).
struct SseReader {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    async fn open(t: &TestApp, id: &str, last_event_id: Option<&str>) -> Self {
        let mut req = t
            .client
            .get(t.url(&format!("/tasks/{id}/events")))
            .bearer_auth(TOKEN);
        if let Some(last) = last_event_id {
            req = req.header("last-event-id", last);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Self {
            stream: resp.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next message, or `None` when the server closed the stream.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut msg = Sse {
                    id: String::new(),
                    event: String::new(),
                    data: Value::Null,
                };
                let mut is_comment = true;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
                        msg.id = v.into();
                        is_comment = false;
                    } else if let Some(v) =
                        line.strip_prefix("event: ").or(line.strip_prefix("event:"))
                    {
                        msg.event = v.into();
                        is_comment = false;
                    } else if let Some(v) =
                        line.strip_prefix("data: ").or(line.strip_prefix("data:"))
                    {
                        msg.data = serde_json::from_str(v).unwrap();
                        is_comment = false;
                    }
                }
                if is_comment {
                    continue; // keep-alive
                }
                return Some(msg);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.stream.next())
                .await
                .expect("the event stream stalled");
            match chunk {
                Some(Ok(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Some(Err(e)) => panic!("stream error: {e}"),
                None => return None,
            }
        }
    }

    async fn rest(&mut self) -> Vec<Sse> {
        let mut all = Vec::new();
        while let Some(m) = self.next().await {
            all.push(m);
        }
        all
    }
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn history_then_live_events_then_the_end(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let id = t.create_task("fix it").await;
    let mut sse = SseReader::open(&t, &id, None).await;

    let first = sse.next().await.expect("history");
    assert_eq!(first.event, "queued");
    assert_eq!(first.id, "1");
    assert_eq!(first.data["seq"], 1);
    assert_eq!(first.data["data"]["repo"], "acme/api");

    // Nothing more until the worker acts: the stream is live, not a replay.
    tokio::spawn(t.worker(Succeeds).run(t.shutdown.clone()));
    let rest = sse.rest().await;
    let kinds: Vec<&str> = rest.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(kinds, ["running", "step", "step", "succeeded"]);
    let ids: Vec<&str> = rest.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["2", "3", "4", "5"]);
    assert_eq!(rest[3].data["data"]["outcome"], "pr_opened");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_reconnect_resumes_after_last_event_id(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let id = t.create_task("fix it").await;
    t.worker(Succeeds).run_one().await.unwrap();

    let mut sse = SseReader::open(&t, &id, Some("3")).await;
    let kinds: Vec<String> = sse.rest().await.into_iter().map(|m| m.event).collect();
    assert_eq!(kinds, ["step", "succeeded"]);

    // A finished task whose events were all seen: the stream ends at once.
    let mut sse = SseReader::open(&t, &id, Some("5")).await;
    assert!(sse.next().await.is_none());
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_cancelled_task_ends_its_streams(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let pipeline = Blocks::default();
    tokio::spawn(t.worker(pipeline.clone()).run(t.shutdown.clone()));
    let id = t.create_task("fix it").await;
    pipeline.started().await;
    let mut sse = SseReader::open(&t, &id, None).await;
    assert_eq!(sse.next().await.unwrap().event, "queued");
    assert_eq!(sse.next().await.unwrap().event, "running");
    assert_eq!(sse.next().await.unwrap().event, "step");
    t.post(&format!("/tasks/{id}/cancel"), &serde_json::json!({}))
        .await;
    let kinds: Vec<String> = sse.rest().await.into_iter().map(|m| m.event).collect();
    assert_eq!(kinds, ["cancel_requested", "cancelled"]);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn resuming_past_the_end_still_ends_with_the_task(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let id = t.create_task("fix it").await;
    let mut sse = SseReader::open(&t, &id, Some("999")).await;
    t.post(&format!("/tasks/{id}/cancel"), &serde_json::json!({}))
        .await;
    assert!(
        sse.next().await.is_none(),
        "the stream ends when the task does"
    );
}
