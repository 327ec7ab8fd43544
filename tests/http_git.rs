//! Clone and push over git smart-HTTP with a token, as with a real forge: the token goes
//! through the credentials callback only, never into a URL, a config file or an error.

mod support;

use std::path::Path;

use maur::forge::GitCredentials;
use maur::workspace::guards::GuardRules;
use maur::workspace::{Author, PushMode, WorkspaceError, Workspaces, commit_all, push};
use secrecy::SecretString;
use support::git::{git, source_repo, temp};
use support::githttp::GitServer;

const TOKEN: &str = "ghs-test-installation-token-0123456789";

fn creds(token: &str) -> GitCredentials {
    GitCredentials {
        username: "x-access-token".into(),
        password: SecretString::from(token.to_owned()),
    }
}

fn rules() -> GuardRules {
    GuardRules {
        allow_workflow_changes: false,
        max_file_bytes: 1 << 20,
        own_secrets: vec![],
    }
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

#[tokio::test]
async fn clone_and_push_over_http_need_the_token_and_never_store_it() {
    let server = GitServer::start(temp("git-root"), "x-access-token", TOKEN).await;
    let url = server.publish(&source_repo(), "acme/api");
    let data = temp("data");

    let (u, d) = (url.clone(), data.clone());
    let pushed = tokio::task::spawn_blocking(move || {
        let ws = Workspaces::new(&d);
        let co = ws.prepare(&u, Some(&creds(TOKEN)), "t1", None, "maur/t1")?;
        std::fs::write(co.path.join("FIX.md"), "fixed\n").unwrap();
        commit_all(
            &co,
            "maur: fix",
            &Author {
                name: "maur".into(),
                email: "m@x".into(),
            },
            &rules(),
        )?;
        // Keep the checkout to inspect it below.
        push(&co, &u, Some(&creds(TOKEN)), PushMode::FastForward)?;
        Ok::<_, WorkspaceError>(co)
    })
    .await
    .unwrap()
    .unwrap();

    let bare = server.root.join("acme/api.git");
    assert_eq!(git(&bare, &["show", "maur/t1:FIX.md"]), "fixed");
    assert_eq!(git(&pushed.path, &["remote", "get-url", "origin"]), url);
    assert!(
        files_containing(&data, TOKEN).is_empty(),
        "the token reached the disk: {:?}",
        files_containing(&data, TOKEN)
    );
}

#[tokio::test]
async fn without_the_token_nothing_is_fetched_and_the_error_says_why() {
    let server = GitServer::start(temp("git-root"), "x-access-token", TOKEN).await;
    let url = server.publish(&source_repo(), "acme/api");
    let data = temp("data");
    let results = tokio::task::spawn_blocking(move || {
        let ws = Workspaces::new(&data);
        let none = ws.prepare(&url, None, "a", None, "maur/a").unwrap_err();
        let wrong = ws
            .prepare(
                &url,
                Some(&creds("wrong-token-0123456789")),
                "b",
                None,
                "maur/b",
            )
            .unwrap_err();
        (none.to_string(), wrong.to_string())
    })
    .await
    .unwrap();
    assert!(results.0.contains("asked for credentials"), "{}", results.0);
    assert!(results.1.contains("refused"), "{}", results.1);
    assert!(
        !results.1.contains("wrong-token"),
        "the error quotes the token: {}",
        results.1
    );
}

#[tokio::test]
async fn a_token_minted_at_the_moment_of_use_outlives_an_expired_one() {
    let server = GitServer::start(temp("git-root"), "x-access-token", TOKEN).await;
    let url = server.publish(&source_repo(), "acme/api");
    let data = temp("data");
    let (u, d) = (url.clone(), data.clone());
    let co = tokio::task::spawn_blocking(move || {
        let ws = Workspaces::new(&d);
        let co = ws
            .prepare(&u, Some(&creds(TOKEN)), "t", None, "maur/t")
            .unwrap();
        std::fs::write(co.path.join("A.md"), "a\n").unwrap();
        commit_all(
            &co,
            "m",
            &Author {
                name: "maur".into(),
                email: "m@x".into(),
            },
            &rules(),
        )
        .unwrap();
        co
    })
    .await
    .unwrap();
    // An hour-long agent run later: the first token has expired, a new one was minted.
    *server.tokens.lock().unwrap() = vec!["ghs-fresh-token-9876543210".into()];
    let u = url.clone();
    let stale = {
        let co = co.clone();
        let u = u.clone();
        tokio::task::spawn_blocking(move || {
            push(&co, &u, Some(&creds(TOKEN)), PushMode::FastForward)
        })
        .await
        .unwrap()
    };
    assert!(stale.is_err(), "the expired token must not work");
    tokio::task::spawn_blocking(move || {
        push(
            &co,
            &u,
            Some(&creds("ghs-fresh-token-9876543210")),
            PushMode::FastForward,
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        git(&server.root.join("acme/api.git"), &["show", "maur/t:A.md"]),
        "a"
    );
}
