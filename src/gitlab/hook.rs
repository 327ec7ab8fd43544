//! `maur gitlab hook`: registers (or updates) a project's webhook so that installing maur
//! on a GitLab project is one command.

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::client::{GitLab, GitLabError, project_id};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    Created(i64),
    Updated(i64),
}

/// The hook maur needs: notes, issues and merge requests, signed with the secret.
pub fn hook_body(url: &str, secret: &str) -> Value {
    json!({
        "url": url,
        "token": secret,
        "note_events": true,
        "issues_events": true,
        "merge_requests_events": true,
        "push_events": false,
        "enable_ssl_verification": url.starts_with("https://"),
    })
}

/// `<base>/webhooks/gitlab` on `project`, created or brought up to date.
pub async fn register(
    gl: &GitLab,
    project: &str,
    base: &str,
    secret: &SecretString,
) -> Result<Registered, GitLabError> {
    let url = format!("{}/webhooks/gitlab", base.trim_end_matches('/'));
    let hooks = format!("/projects/{}/hooks", project_id(project));
    let existing = gl
        .call(Method::GET, &format!("{hooks}?per_page=100"), None)
        .await?
        .body
        .as_array()
        .and_then(|list| {
            list.iter()
                .find(|h| h["url"].as_str() == Some(url.as_str()))
                .and_then(|h| h["id"].as_i64())
        });
    let body = hook_body(&url, secret.expose_secret());
    match existing {
        Some(id) => {
            gl.call(Method::PUT, &format!("{hooks}/{id}"), Some(&body))
                .await?;
            Ok(Registered::Updated(id))
        }
        None => {
            // Once: a retried create would register the hook twice.
            let created = gl.call_once(Method::POST, &hooks, Some(&body)).await?;
            Ok(Registered::Created(
                created.body["id"].as_i64().unwrap_or_default(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_asks_for_what_maur_reads() {
        let b = hook_body("https://maur.acme.dev/webhooks/gitlab", "s");
        assert_eq!(b["note_events"], true);
        assert_eq!(b["issues_events"], true);
        assert_eq!(b["merge_requests_events"], true);
        assert_eq!(b["push_events"], false);
        assert_eq!(b["enable_ssl_verification"], true);
        assert_eq!(
            hook_body("http://10.0.0.5:8000/webhooks/gitlab", "s")["enable_ssl_verification"],
            false
        );
    }
}
