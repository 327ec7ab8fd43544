//! The GitHub App's settings: `GITHUB_APP_ID`, its private key, the webhook secrets and where
//! GitHub lives (github.com or a GitHub Enterprise Server).

use secrecy::{ExposeSecret, SecretString};

use crate::config::ConfigError;

pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The App's identity. Present only when all three parts are configured.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    pub app_id: u64,
    /// PEM text of the App's RSA private key.
    pub private_key: SecretString,
    /// Every secret a webhook may be signed with (several while one is being rotated).
    pub webhook_secrets: Vec<SecretString>,
}

#[derive(Debug, Clone)]
pub struct GitHubSettings {
    pub app: Option<AppCredentials>,
    /// REST base, e.g. `https://api.github.com` or `https://ghe.example.com/api/v3`.
    pub api_url: String,
    /// Where repositories are cloned from and pull requests are shown:
    /// `https://github.com`, or the Enterprise host.
    pub web_url: String,
    /// The command prefix people type in comments (`/maur`).
    pub command: String,
    /// Adding this label to an issue is the same as `/maur fix`.
    pub label: String,
    /// `--write-github-env`: the setup callback writes the new App's credentials to
    /// `MAUR_DATA_DIR/github-app.env` instead of showing them.
    pub write_env: bool,
}

impl GitHubSettings {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let api_url = get("GITHUB_API_URL")
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        if url::Url::parse(&api_url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
            return Err(ConfigError::new(
                "GITHUB_API_URL",
                format!(
                    "expected an http(s) URL such as https://api.github.com or https://ghe.example.com/api/v3, got {api_url:?}"
                ),
            ));
        }
        let web_url = match get("GITHUB_URL") {
            Some(u) => u.trim().trim_end_matches('/').to_owned(),
            None => web_url_for(&api_url),
        };
        let command = get("MAUR_COMMAND").unwrap_or_else(|| "/maur".to_owned());
        let command = command.trim().to_owned();
        if command.chars().any(char::is_whitespace) {
            return Err(ConfigError::new(
                "MAUR_COMMAND",
                format!("expected one word such as /maur, got {command:?}"),
            ));
        }
        let label = get("MAUR_GITHUB_LABEL").unwrap_or_else(|| "maur".to_owned());

        let app_id = get("GITHUB_APP_ID");
        let key = match (
            get("GITHUB_APP_PRIVATE_KEY"),
            get("GITHUB_APP_PRIVATE_KEY_PATH"),
        ) {
            (Some(pem), _) => Some(("GITHUB_APP_PRIVATE_KEY", pem)),
            (None, Some(path)) => {
                let pem = std::fs::read_to_string(path.trim()).map_err(|e| {
                    ConfigError::new(
                        "GITHUB_APP_PRIVATE_KEY_PATH",
                        format!("cannot read {path:?}: {e}"),
                    )
                })?;
                Some(("GITHUB_APP_PRIVATE_KEY_PATH", pem))
            }
            (None, None) => None,
        };
        let secrets = get("GITHUB_WEBHOOK_SECRET");
        let app = match (app_id, key, secrets) {
            (None, None, None) => None,
            (Some(id), Some((key_var, pem)), Some(secrets)) => {
                let app_id = id.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ConfigError::new(
                        "GITHUB_APP_ID",
                        format!("expected the App's numeric id (App settings → About), got {id:?}"),
                    )
                })?;
                let pem = normalize_pem(&pem);
                jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
                    ConfigError::new(
                        key_var,
                        "expected the App's RSA private key in PEM format (the .pem file GitHub downloads)",
                    )
                })?;
                let webhook_secrets = crate::config::secret_list(Some(secrets));
                if webhook_secrets.is_empty() {
                    return Err(ConfigError::new(
                        "GITHUB_WEBHOOK_SECRET",
                        "expected one or more secrets, comma-separated",
                    ));
                }
                Some(AppCredentials {
                    app_id,
                    private_key: SecretString::from(pem),
                    webhook_secrets,
                })
            }
            (id, key, secrets) => {
                let missing = [
                    ("GITHUB_APP_ID", id.is_none()),
                    ("GITHUB_APP_PRIVATE_KEY", key.is_none()),
                    ("GITHUB_WEBHOOK_SECRET", secrets.is_none()),
                ]
                .into_iter()
                .find(|(_, missing)| *missing)
                .map_or("GITHUB_APP_ID", |(var, _)| var);
                return Err(ConfigError::new(
                    missing,
                    "the GitHub App needs GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY (or GITHUB_APP_PRIVATE_KEY_PATH) and GITHUB_WEBHOOK_SECRET together; this one is missing",
                ));
            }
        };
        Ok(Self {
            app,
            api_url,
            web_url,
            command,
            label,
            write_env: false,
        })
    }

    pub fn own_secrets(&self) -> Vec<String> {
        self.app
            .iter()
            .flat_map(|app| {
                app.webhook_secrets
                    .iter()
                    .map(|s| s.expose_secret().to_owned())
            })
            .collect()
    }
}

/// github.com's API lives on its own host; an Enterprise Server's under `/api/v3`.
fn web_url_for(api_url: &str) -> String {
    if api_url == DEFAULT_API_URL {
        return "https://github.com".to_owned();
    }
    api_url
        .strip_suffix("/api/v3")
        .unwrap_or(api_url)
        .to_owned()
}

/// Env files often hold the key on one line with literal `\n`.
fn normalize_pem(raw: &str) -> String {
    let text = raw.trim().replace("\\n", "\n");
    format!("{text}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<GitHubSettings, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        GitHubSettings::from_lookup(&|name: &str| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_and_enterprise_urls() {
        let s = parse(&[]).unwrap();
        assert!(s.app.is_none());
        assert_eq!(s.api_url, "https://api.github.com");
        assert_eq!(s.web_url, "https://github.com");
        assert_eq!((s.command.as_str(), s.label.as_str()), ("/maur", "maur"));
        let s = parse(&[("GITHUB_API_URL", "https://ghe.example.com/api/v3/")]).unwrap();
        assert_eq!(s.api_url, "https://ghe.example.com/api/v3");
        assert_eq!(s.web_url, "https://ghe.example.com");
    }

    #[test]
    fn a_partial_app_names_what_is_missing() {
        let e = parse(&[("GITHUB_APP_ID", "12")]).unwrap_err();
        assert_eq!(e.var, "GITHUB_APP_PRIVATE_KEY");
        let e = parse(&[
            ("GITHUB_APP_ID", "x"),
            ("GITHUB_APP_PRIVATE_KEY", "nope"),
            ("GITHUB_WEBHOOK_SECRET", "s"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "GITHUB_APP_ID");
        let e = parse(&[
            ("GITHUB_APP_ID", "12"),
            ("GITHUB_APP_PRIVATE_KEY", "not a key"),
            ("GITHUB_WEBHOOK_SECRET", "s"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "GITHUB_APP_PRIVATE_KEY");
        assert!(!e.to_string().contains("not a key"), "{e}");
        let e = parse(&[("GITHUB_API_URL", "ftp://x")]).unwrap_err();
        assert_eq!(e.var, "GITHUB_API_URL");
        let e = parse(&[("MAUR_COMMAND", "/maur please")]).unwrap_err();
        assert_eq!(e.var, "MAUR_COMMAND");
    }
}
