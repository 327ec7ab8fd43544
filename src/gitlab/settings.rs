//! GitLab settings: where GitLab is, the bot's token and the webhook secret.

use secrecy::{ExposeSecret, SecretString};

use crate::config::ConfigError;

pub const DEFAULT_URL: &str = "https://gitlab.com";

#[derive(Debug, Clone)]
pub struct GitLabSettings {
    /// `https://gitlab.com` or a self-managed instance.
    pub url: String,
    /// A group or project access token (a bot user), or a personal token. `None`: GitLab
    /// is not configured.
    pub token: Option<SecretString>,
    /// Every value `X-Gitlab-Token` may carry (several while one is being rotated).
    pub webhook_secrets: Vec<SecretString>,
    /// Adding this label to an issue is the same as `/maur fix`.
    pub label: String,
}

impl GitLabSettings {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let url = get("GITLAB_URL")
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        if url::Url::parse(&url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
            return Err(ConfigError::new(
                "GITLAB_URL",
                format!("expected an http(s) URL such as https://gitlab.com, got {url:?}"),
            ));
        }
        let token = get("GITLAB_TOKEN").map(|t| SecretString::from(t.trim().to_owned()));
        let webhook_secrets = crate::config::secret_list(get("GITLAB_WEBHOOK_SECRET"));
        match (&token, webhook_secrets.is_empty()) {
            (Some(_), true) => {
                return Err(ConfigError::new(
                    "GITLAB_WEBHOOK_SECRET",
                    "required with GITLAB_TOKEN: the secret GitLab sends as X-Gitlab-Token (try `openssl rand -hex 32`)",
                ));
            }
            (None, false) => {
                return Err(ConfigError::new(
                    "GITLAB_TOKEN",
                    "required with GITLAB_WEBHOOK_SECRET: a group or project access token with the api and write_repository scopes",
                ));
            }
            _ => {}
        }
        Ok(Self {
            url,
            token,
            webhook_secrets,
            label: get("MAUR_GITLAB_LABEL").unwrap_or_else(|| "maur".to_owned()),
        })
    }

    pub fn own_secrets(&self) -> Vec<String> {
        self.token
            .iter()
            .chain(&self.webhook_secrets)
            .map(|s| s.expose_secret().to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<GitLabSettings, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        GitLabSettings::from_lookup(&|name: &str| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn token_and_secret_go_together() {
        let s = parse(&[]).unwrap();
        assert!(s.token.is_none());
        assert_eq!(s.url, "https://gitlab.com");
        assert_eq!(
            parse(&[("GITLAB_TOKEN", "t")]).unwrap_err().var,
            "GITLAB_WEBHOOK_SECRET"
        );
        assert_eq!(
            parse(&[("GITLAB_WEBHOOK_SECRET", "s")]).unwrap_err().var,
            "GITLAB_TOKEN"
        );
        let s = parse(&[
            ("GITLAB_TOKEN", "t"),
            ("GITLAB_WEBHOOK_SECRET", "a, b"),
            ("GITLAB_URL", "https://git.acme.dev/"),
        ])
        .unwrap();
        assert_eq!(s.webhook_secrets.len(), 2);
        assert_eq!(s.url, "https://git.acme.dev");
        assert_eq!(
            parse(&[("GITLAB_URL", "git.acme.dev")]).unwrap_err().var,
            "GITLAB_URL"
        );
    }
}
