//! Registering the GitHub App through the manifest flow: the setup page, GitHub's redirect
//! back, and the credentials shown once or written to a private file.

mod support;

use reqwest::StatusCode;
use sqlx::PgPool;
use support::TestApp;
use support::fakegithub::{APP_ID, FakeGitHub};
use support::git::temp;

async fn fake() -> FakeGitHub {
    FakeGitHub::start("http://127.0.0.1:9", Default::default()).await
}

/// The `state` the setup page put in its form.
fn state_of(page: &str) -> String {
    let start = page.find("?state=").expect("a state in the form") + 7;
    page[start..].split('"').next().unwrap().to_owned()
}

/// The setup page, and the cookie that ties its flow to this browser.
async fn start(t: &TestApp, path: &str) -> (String, String) {
    let (status, page, headers) = get(t, path, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    (page, cookie.split(';').next().unwrap().to_owned())
}

async fn callback(
    t: &TestApp,
    query: &str,
    cookie: &str,
) -> (StatusCode, String, reqwest::header::HeaderMap) {
    let resp = t
        .client
        .get(t.url(&format!("/github/setup/callback?{query}")))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, resp.text().await.unwrap(), headers)
}

async fn get(
    t: &TestApp,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, String, reqwest::header::HeaderMap) {
    let mut req = t.client.get(t.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, resp.text().await.unwrap(), headers)
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn the_manifest_flow_shows_the_credentials_once(pool: PgPool) {
    let gh = fake().await;
    let t = TestApp::spawn_with(
        pool,
        &[
            ("GITHUB_API_URL", &gh.url),
            ("GITHUB_URL", "https://github.example"),
            ("MAUR_PUBLIC_URL", "https://maur.acme.dev"),
        ],
    )
    .await;
    let (page, cookie) = start(&t, "/github/setup?org=acme").await;
    assert!(
        page.contains(
            "action=\"https://github.example/organizations/acme/settings/apps/new?state="
        ),
        "{page}"
    );
    assert!(
        page.contains("https://maur.acme.dev/webhooks/github"),
        "{page}"
    );
    let state = state_of(&page);

    let (status, body, _) = callback(
        &t,
        "code=good-code&state=forged",
        "maur_github_setup=forged",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("state"), "{body}");
    let (status, body, _) = callback(&t, &format!("state={state}"), &cookie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Someone else's browser (no cookie) cannot finish this flow.
    let (status, body, _) = callback(&t, &format!("code=good-code&state={state}"), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("browser"), "{body}");

    let (status, page, headers) =
        callback(&t, &format!("code=good-code&state={state}"), &cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(page.contains(&format!("GITHUB_APP_ID={APP_ID}")), "{page}");
    assert!(
        page.contains("GITHUB_WEBHOOK_SECRET=fresh-webhook-secret"),
        "{page}"
    );
    assert!(
        page.contains("GITHUB_APP_PRIVATE_KEY=&quot;-----BEGIN"),
        "{page}"
    );

    // The state is spent; so is GitHub's code.
    let (status, _, _) = callback(&t, &format!("code=good-code&state={state}"), &cookie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (page, cookie) = start(&t, "/github/setup").await;
    let (status, body, _) = callback(
        &t,
        &format!("code=good-code&state={}", state_of(&page)),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("start again"), "{body}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn with_write_the_credentials_go_to_a_private_file(pool: PgPool) {
    use std::os::unix::fs::PermissionsExt;
    let gh = fake().await;
    let data = temp("data");
    let mut config = support::config(&[
        ("GITHUB_API_URL", &gh.url),
        ("MAUR_DATA_DIR", data.to_str().unwrap()),
        ("MAUR_PUBLIC_URL", "https://maur.acme.dev"),
    ]);
    config.github.write_env = true;
    let t = TestApp::spawn_config(pool, config).await;
    let (page, cookie) = start(&t, "/github/setup").await;
    let (status, page, _) = callback(
        &t,
        &format!("code=good-code&state={}", state_of(&page)),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(!page.contains("GITHUB_WEBHOOK_SECRET"), "{page}");
    let file = data.join("github-app.env");
    assert!(page.contains(file.to_str().unwrap()), "{page}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("GITHUB_APP_ID={APP_ID}\n")));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The file is what maur reads back: it parses as a valid App configuration.
    let vars: Vec<(String, String)> = dotenvy::from_path_iter(&file)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut all: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.push(("GITHUB_API_URL", &gh.url));
    assert_eq!(support::config(&all).github.app.unwrap().app_id, APP_ID);

    // A second App would overwrite the first's credentials: refused before GitHub's
    // one-time code is spent.
    let before = gh.with(|s| s.calls.len());
    let (page, cookie) = start(&t, "/github/setup").await;
    let (status, body, _) = callback(
        &t,
        &format!("code=good-code&state={}", state_of(&page)),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("will not overwrite"), "{body}");
    assert_eq!(gh.with(|s| s.calls.len()), before, "the code was not spent");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn once_an_app_exists_setup_needs_the_api_token(pool: PgPool) {
    let gh = fake().await;
    let vars = gh.vars("s3cret-for-setup");
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let t = TestApp::spawn_with(pool, &refs).await;
    let (status, body, _) = get(&t, "/github/setup", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("already configured"), "{body}");
    let (status, _, _) = get(&t, "/github/setup", Some("wrong-token-0123456789")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, page, _) = get(&t, "/github/setup", Some(support::TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    // No MAUR_PUBLIC_URL: the manifest uses the address the request came to.
    assert!(
        page.contains(&format!("{}/webhooks/github", t.base)),
        "{page}"
    );
}
