//! The App manifest (`app-manifest.yml`) and the manifest flow that registers the App on
//! GitHub in a few clicks: a page whose form posts the manifest to GitHub, and the callback
//! that trades GitHub's one-time code for the App's id, key and webhook secret.

use serde_json::Value;

const MANIFEST: &str = include_str!("../../app-manifest.yml");
const PLACEHOLDER: &str = "https://maur.example.com";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "--url: expected the public http(s) base URL of this maur, such as https://maur.example.com, got {0:?}"
    )]
    BadUrl(String),
    #[error("app-manifest.yml is not valid: {0}")]
    Invalid(String),
}

/// The manifest as JSON, with every URL pointing at `base` (this maur's public URL).
pub fn manifest(base: &str) -> Result<Value, ManifestError> {
    let base = base.trim().trim_end_matches('/');
    match url::Url::parse(base) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => return Err(ManifestError::BadUrl(base.to_owned())),
    }
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(MANIFEST).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    let mut json = serde_json::to_value(yaml).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    rebase(&mut json, base);
    Ok(json)
}

fn rebase(value: &mut Value, base: &str) {
    match value {
        Value::String(s) if s.starts_with(PLACEHOLDER) => {
            *s = format!("{base}{}", &s[PLACEHOLDER.len()..]);
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rebase(v, base)),
        Value::Object(map) => map.values_mut().for_each(|v| rebase(v, base)),
        _ => {}
    }
}

/// Where the manifest is posted: the user's settings, or an organization's.
pub fn new_app_url(web_url: &str, org: Option<&str>) -> String {
    match org {
        Some(org) => format!(
            "{web_url}/organizations/{}/settings/apps/new",
            url::form_urlencoded::byte_serialize(org.as_bytes()).collect::<String>()
        ),
        None => format!("{web_url}/settings/apps/new"),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The setup page: one button that takes the manifest to GitHub.
pub fn setup_page(manifest: &Value, action: &str, state: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Set up maur on GitHub</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">\
         <h1>Register the maur GitHub App</h1>\
         <p>GitHub will create an App named <b>{name}</b> whose webhooks come to <code>{hook}</code>. \
         You can change the name on the next page.</p>\
         <form action=\"{action}?state={state}\" method=\"post\">\
         <input type=\"hidden\" name=\"manifest\" value=\"{manifest}\">\
         <button type=\"submit\">Create the GitHub App</button></form>\
         <p>To create it for an organization, open this page with <code>?org=&lt;name&gt;</code>.</p>\
         </body></html>",
        name = html_escape(manifest["name"].as_str().unwrap_or("maur")),
        hook = html_escape(
            manifest["hook_attributes"]["url"]
                .as_str()
                .unwrap_or_default()
        ),
        action = html_escape(action),
        state = html_escape(state),
        manifest = html_escape(&manifest.to_string()),
    )
}

/// The env lines for an App GitHub just created (`POST /app-manifests/{code}/conversions`).
pub fn env_lines(conversion: &Value) -> Option<String> {
    let id = conversion["id"].as_i64()?;
    let pem = conversion["pem"].as_str()?;
    let secret = conversion["webhook_secret"].as_str()?;
    Some(format!(
        "GITHUB_APP_ID={id}\nGITHUB_APP_PRIVATE_KEY=\"{}\"\nGITHUB_WEBHOOK_SECRET={secret}\n",
        pem.trim().replace('\n', "\\n")
    ))
}

/// The page shown once after the App was created.
pub fn created_page(conversion: &Value, env: &str, written_to: Option<&str>) -> String {
    let slug = conversion["slug"].as_str().unwrap_or("maur");
    let app_url = conversion["html_url"].as_str().unwrap_or_default();
    let body = match written_to {
        Some(path) => format!(
            "<p>The App's credentials were written to <code>{}</code> (mode 0600). Load them \
             (for example <code>set -a; . {0}; set +a</code>) and restart maur.</p>",
            html_escape(path)
        ),
        None => format!(
            "<p>Add these lines to maur's environment (or <code>.env</code>) and restart it. \
             <b>This page is shown once</b>: GitHub will not show the private key again.</p>\
             <pre>{}</pre>",
            html_escape(env)
        ),
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>maur: App created</title></head>\
         <body style=\"font-family:sans-serif;max-width:48em;margin:3em auto\">\
         <h1>GitHub App <code>{}</code> created</h1>{body}\
         <p>Then install it on your repositories: <a href=\"{app}/installations/new\">{app}/installations/new</a></p>\
         </body></html>",
        html_escape(slug),
        app = html_escape(app_url),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_manifest_points_at_this_maur() {
        let m = manifest("https://maur.acme.dev/").unwrap();
        assert_eq!(m["url"], "https://maur.acme.dev");
        assert_eq!(
            m["hook_attributes"]["url"],
            "https://maur.acme.dev/webhooks/github"
        );
        assert_eq!(
            m["redirect_url"],
            "https://maur.acme.dev/github/setup/callback"
        );
        assert_eq!(m["public"], false);
        assert_eq!(m["default_permissions"]["contents"], "write");
        assert_eq!(m["default_permissions"]["issues"], "write");
        assert_eq!(m["default_permissions"]["pull_requests"], "write");
        assert_eq!(m["default_permissions"]["metadata"], "read");
        let events: Vec<&str> = m["default_events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e.as_str())
            .collect();
        assert_eq!(
            events,
            [
                "issues",
                "issue_comment",
                "pull_request",
                "pull_request_review_comment"
            ]
        );
        assert!(manifest("maur.acme.dev").is_err());
        assert!(manifest("ftp://x").is_err());
    }

    #[test]
    fn setup_pages_escape_what_they_show() {
        let m = manifest("https://maur.acme.dev").unwrap();
        let page = setup_page(&m, "https://github.com/settings/apps/new", "s\"1");
        assert!(page.contains("name=\"manifest\" value=\"{&quot;"));
        assert!(page.contains("state=s&quot;1"));
        assert_eq!(
            new_app_url("https://github.com", Some("acme co")),
            "https://github.com/organizations/acme+co/settings/apps/new"
        );
        let conv = json!({"id": 9, "slug": "maur-acme", "pem": "-----BEGIN X-----\nabc\n-----END X-----\n", "webhook_secret": "w", "html_url": "https://github.com/apps/maur-acme"});
        let env = env_lines(&conv).unwrap();
        assert_eq!(
            env,
            "GITHUB_APP_ID=9\nGITHUB_APP_PRIVATE_KEY=\"-----BEGIN X-----\\nabc\\n-----END X-----\"\nGITHUB_WEBHOOK_SECRET=w\n"
        );
        assert!(created_page(&conv, &env, None).contains("GITHUB_APP_ID=9"));
        assert!(!created_page(&conv, &env, Some("/d/github-app.env")).contains("GITHUB_APP_ID=9"));
    }
}
