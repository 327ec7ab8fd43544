//! The REST API as a client sees it: statuses, JSON bodies, and what ends up in Postgres.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::{OLD_TOKEN, TOKEN, TestApp, read};

const PROTECTED: &[(&str, &str)] = &[
    ("POST", "/tasks"),
    ("GET", "/tasks"),
    ("GET", "/tasks/01a207cd-7993-76ba-8302-b3acf1587615"),
    ("POST", "/tasks/01a207cd-7993-76ba-8302-b3acf1587615/cancel"),
    ("GET", "/tasks/01a207cd-7993-76ba-8302-b3acf1587615/events"),
    ("POST", "/webhooks/exception"),
];

async fn call(t: &TestApp, method: &str, path: &str, auth: Option<&str>) -> (StatusCode, Value) {
    let mut req = t
        .client
        .request(method.parse().unwrap(), t.url(path))
        .json(&json!({"prompt": "x", "repo": "a/b", "fingerprint": "f", "title": "t"}));
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    read(req.send().await.unwrap()).await
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn every_route_but_probes_needs_a_valid_bearer_token(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    for (method, path) in PROTECTED {
        for auth in [
            None,
            Some("Bearer wrong-token-0123456789"),
            Some("Basic dXNlcjpwYXNz"),
            Some("Bearer "),
        ] {
            let resp = {
                let mut req = t.client.request(method.parse().unwrap(), t.url(path));
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                req.json(&json!({})).send().await.unwrap()
            };
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {auth:?}"
            );
            assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"maur\"");
            let (_, body) = read(resp).await;
            assert!(body["error"].as_str().unwrap().len() > 10, "{body}");
        }
    }
    // Both the old and the new token work while a rotation is under way.
    for token in [OLD_TOKEN, TOKEN] {
        let (status, _) = call(&t, "GET", "/tasks", Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(t.count("SELECT count(*) FROM tasks").await, 0);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn probes_need_no_token(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let health = t.client.get(t.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "ok");
    let ready = t.client.get(t.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = t.client.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_manual_task_is_queued_and_shown(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let (status, body) = t
        .post(
            "/tasks",
            &json!({
                "prompt": "Refactor the payment module to use the new Stripe SDK",
                "repo": "https://github.com/acme/api.git",
                "repo_branch": "develop",
                "source_id": "ticket-1",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
    let id = body["task_id"].as_str().unwrap();

    let task = t.task(id).await;
    assert_eq!(task["id"], id);
    assert_eq!(task["status"], "queued");
    assert_eq!(task["source"], "manual");
    assert_eq!(task["repo"], "https://github.com/acme/api.git");
    assert_eq!(task["repo_url"], "https://github.com/acme/api");
    assert_eq!(task["repo_kind"], "http");
    assert_eq!(task["repo_branch"], "develop");
    assert_eq!(task["attempts"], 0);
    assert_eq!(
        task["title"],
        "Refactor the payment module to use the new Stripe SDK"
    );
    assert_eq!(
        task["prompt"],
        "Refactor the payment module to use the new Stripe SDK"
    );
    assert_eq!(task["usage"]["input_tokens"], 0);
    assert_eq!(TestApp::event_kinds(&task), ["queued"]);
    assert!(task["created_at"].is_string());
    assert!(task["finished_at"].is_null());
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn local_paths_and_file_urls_are_accepted(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    for (repo, kind) in [
        ("/srv/git/api", "path"),
        ("file:///srv/git/api.git", "file"),
    ] {
        let (status, body) = t
            .post("/tasks", &json!({"prompt": "x", "repo": repo}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let task = t.task(body["task_id"].as_str().unwrap()).await;
        assert_eq!(task["repo_kind"], kind);
        assert!(task["repo_branch"].is_null());
    }
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn list_is_newest_first_and_filters(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let first = t.create_task("first").await;
    let second = t.create_task("second").await;
    let third = t.create_task("third").await;
    let (status, cancelled) = t.post(&format!("/tasks/{second}/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");

    let (_, all) = t.get("/tasks").await;
    let ids: Vec<&str> = all["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [third.as_str(), second.as_str(), first.as_str()]);

    let (_, queued) = t.get("/tasks?status=queued&limit=1").await;
    assert_eq!(queued["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(queued["tasks"][0]["id"], third.as_str());
    let (_, done) = t.get("/tasks?status=cancelled").await;
    assert_eq!(done["tasks"][0]["id"], second.as_str());

    for bad in [
        "/tasks?status=done",
        "/tasks?limit=0",
        "/tasks?limit=many",
        "/tasks?order=asc",
    ] {
        let (status, body) = t.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_second_task_for_the_same_source_id_is_a_conflict_while_active(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let body = json!({"prompt": "x", "repo": "a/b", "source_id": "LIN-7"});
    let (_, first) = t.post("/tasks", &body).await;
    let (status, dup) = t.post("/tasks", &body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(dup["task_id"], first["task_id"]);
    assert!(dup["error"].as_str().unwrap().contains("source_id"));

    // Once it is no longer active, the same source may ask again.
    let id = first["task_id"].as_str().unwrap();
    t.post(&format!("/tasks/{id}/cancel"), &json!({})).await;
    let (status, again) = t.post("/tasks", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_ne!(again["task_id"], first["task_id"]);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn exception_webhook_builds_a_fix_prompt(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let (status, body) = t
        .post(
            "/webhooks/exception",
            &json!({
                "fingerprint": "KeyError-user-profile-views-42",
                "title": "KeyError: 'email' in user_profile view",
                "description": "Traceback (most recent call last):\n  File \"views.py\", line 42",
                "repo": "acme/web",
                "repo_branch": "main",
                "extra": {"environment": "production", "user_id": 123}
            }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let task = t.task(body["task_id"].as_str().unwrap()).await;
    assert_eq!(task["source"], "exception");
    assert_eq!(task["title"], "Fix KeyError: 'email' in user_profile view");
    let prompt = task["prompt"].as_str().unwrap();
    assert!(prompt.contains("KeyError: 'email' in user_profile view"));
    assert!(prompt.contains("File \"views.py\", line 42"));
    assert!(prompt.contains("\"environment\": \"production\""));
    assert!(prompt.contains("reproduces the failure"));
    assert_eq!(task["context"]["extra"]["user_id"], 123);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn exception_repo_comes_from_the_default_or_is_refused(pool: PgPool) {
    let t = TestApp::spawn(pool.clone()).await;
    let report = json!({"fingerprint": "f-1", "title": "boom", "description": "d"});
    let (status, body) = t.post("/webhooks/exception", &report).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "repo");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("MAUR_DEFAULT_REPO")
    );
    assert_eq!(t.count("SELECT count(*) FROM tasks").await, 0);

    let t = TestApp::spawn_with(pool, &[("MAUR_DEFAULT_REPO", "acme/web")]).await;
    let (status, body) = t.post("/webhooks/exception", &report).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let task = t.task(body["task_id"].as_str().unwrap()).await;
    assert_eq!(task["repo_url"], "acme/web");

    let (status, dup) = t.post("/webhooks/exception", &report).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(dup["task_id"], body["task_id"]);
    assert!(dup["error"].as_str().unwrap().contains("fingerprint"));
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn concurrent_identical_fingerprints_create_exactly_one_task(pool: PgPool) {
    let t = TestApp::spawn_with(pool, &[("MAUR_DEFAULT_REPO", "acme/web")]).await;
    let report = json!({"fingerprint": "same-everywhere", "title": "boom", "description": "d"});
    let requests = (0..100).map(|_| {
        let (client, url, report) = (
            t.client.clone(),
            t.url("/webhooks/exception"),
            report.clone(),
        );
        tokio::spawn(async move {
            read(
                client
                    .post(url)
                    .bearer_auth(TOKEN)
                    .json(&report)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        })
    });
    let results = futures::future::join_all(requests).await;
    let mut accepted = Vec::new();
    let mut conflicts = Vec::new();
    for r in results {
        let (status, body) = r.unwrap();
        match status {
            StatusCode::ACCEPTED => accepted.push(body["task_id"].clone()),
            StatusCode::CONFLICT => conflicts.push(body["task_id"].clone()),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(accepted.len(), 1);
    assert_eq!(conflicts.len(), 99);
    assert!(conflicts.iter().all(|id| *id == accepted[0]));
    assert_eq!(t.count("SELECT count(*) FROM tasks").await, 1);
    assert_eq!(t.count("SELECT count(*) FROM task_events").await, 1);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn bad_input_gets_a_json_error_and_stores_nothing(pool: PgPool) {
    let t = TestApp::spawn_with(pool, &[("MAUR_MAX_BODY", "4KiB")]).await;
    let raw = |path: &'static str, body: String| {
        let req = t
            .client
            .post(t.url(path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body);
        async move { read(req.send().await.unwrap()).await }
    };
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        ("/tasks", String::new(), StatusCode::BAD_REQUEST, "empty"),
        ("/tasks", "{\"prompt\": ".into(), StatusCode::BAD_REQUEST, "malformed JSON"),
        ("/tasks", "not json".into(), StatusCode::BAD_REQUEST, "malformed JSON"),
        ("/tasks", "[]".into(), StatusCode::BAD_REQUEST, "invalid type"),
        ("/tasks", "{\"prompt\": 5, \"repo\": \"a/b\"}".into(), StatusCode::BAD_REQUEST, "prompt"),
        ("/tasks", "{\"repo\": \"a/b\"}".into(), StatusCode::BAD_REQUEST, "missing field `prompt`"),
        ("/tasks", "{\"prompt\": \"x\", \"repo\": \"a/b\", \"branch\": \"x\"}".into(), StatusCode::BAD_REQUEST, "unknown field `branch`"),
        ("/tasks", "{\"prompt\": \"x\", \"repo\": [\"a/b\"]}".into(), StatusCode::BAD_REQUEST, "repo"),
        ("/tasks", "{\"prompt\": \"\", \"repo\": \"a/b\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "prompt"),
        ("/tasks", "{\"prompt\": \"x\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "repo"),
        ("/tasks", "{\"prompt\": \"x\", \"repo\": \"https://user:tok@github.com/a/b\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "credentials"),
        ("/tasks", "{\"prompt\": \"x\", \"repo\": \"git@github.com:a/b.git\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "SSH"),
        ("/tasks", "{\"prompt\": \"x\", \"repo\": \"a/b\", \"repo_branch\": \"a..b\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "repo_branch"),
        ("/tasks", format!("{{\"prompt\": \"{}\", \"repo\": \"a/b\"}}", "x".repeat(5000)), StatusCode::PAYLOAD_TOO_LARGE, "MAUR_MAX_BODY"),
        ("/tasks", "{\"prompt\": \"a\\u0000b\", \"repo\": \"a/b\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "NUL"),
        ("/webhooks/exception", "{\"fingerprint\": \"f\", \"title\": \"t\", \"repo\": \"a/b\", \"extra\": {\"k\": \"\\u0000\"}}".into(), StatusCode::UNPROCESSABLE_ENTITY, "NUL"),
        ("/webhooks/exception", "{\"title\": \"t\", \"repo\": \"a/b\"}".into(), StatusCode::BAD_REQUEST, "missing field `fingerprint`"),
        ("/webhooks/exception", "{\"fingerprint\": \" \", \"title\": \"t\", \"repo\": \"a/b\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "fingerprint"),
        ("/webhooks/exception", "{\"fingerprint\": \"f\", \"title\": \"t\", \"repo\": \"a/b\", \"extra\": 1, \"severity\": 2}".into(), StatusCode::BAD_REQUEST, "severity"),
        ("/webhooks/exception", "{\"fingerprint\": \"f\", \"title\": 3, \"repo\": \"a/b\"}".into(), StatusCode::BAD_REQUEST, "title"),
    ];
    for (path, body, want, mention) in cases {
        let shown = body.chars().take(60).collect::<String>();
        let (status, json) = raw(path, body).await;
        assert_eq!(status, want, "{path} {shown}: {json}");
        let error = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {json}"));
        assert!(
            error.contains(mention),
            "{path} {shown}: {error:?} should mention {mention:?}"
        );
    }

    // Chunked bodies with no Content-Length are limited as they stream in.
    let chunks = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let resp = t
        .client
        .post(t.url("/tasks"))
        .bearer_auth(TOKEN)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(t.count("SELECT count(*) FROM tasks").await, 0);
    assert_eq!(t.count("SELECT count(*) FROM task_events").await, 0);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn unknown_routes_methods_and_ids_are_json_errors(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let cases = [
        ("GET", "/nope", StatusCode::NOT_FOUND),
        ("POST", "/webhooks/unknown", StatusCode::NOT_FOUND),
        ("DELETE", "/tasks", StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/tasks/not-a-uuid", StatusCode::NOT_FOUND),
        (
            "GET",
            "/tasks/01a207cd-7993-76ba-8302-b3acf1587615",
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/tasks/01a207cd-7993-76ba-8302-b3acf1587615/cancel",
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/tasks/01a207cd-7993-76ba-8302-b3acf1587615/events",
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, want) in cases {
        let (status, body) = call(&t, method, path, Some(&format!("Bearer {TOKEN}"))).await;
        assert_eq!(status, want, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn metrics_count_requests_and_tasks(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    t.create_task("one").await;
    t.create_task("two").await;
    let _ = t.client.post(t.url("/tasks")).send().await.unwrap();
    let text = t
        .client
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "maur_http_requests_total{method=\"POST\",route=\"/tasks\",status=\"202\"} 2",
        "maur_http_requests_total{method=\"POST\",route=\"/tasks\",status=\"401\"} 1",
        "maur_tasks{status=\"queued\"} 2",
        "maur_tasks{status=\"running\"} 0",
        "maur_queue_depth 2",
        "# TYPE maur_claim_latency_seconds histogram",
        "# TYPE maur_task_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn the_api_token_is_never_stored(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let id = t.create_task("do the thing").await;
    t.post(&format!("/tasks/{id}/cancel"), &json!({})).await;
    let dump: String = sqlx::query_scalar(
        "SELECT coalesce(string_agg(t::text, ' '), '') FROM (
            SELECT row_to_json(tasks)::text AS t FROM tasks
            UNION ALL SELECT row_to_json(task_events)::text FROM task_events) x",
    )
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert!(!dump.is_empty());
    assert!(!dump.contains(TOKEN));
    assert!(!dump.contains(OLD_TOKEN));
}
