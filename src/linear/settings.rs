//! Linear settings: the webhook secret, the API key, the label and the team → repository map.

use secrecy::{ExposeSecret, SecretString};

use crate::config::ConfigError;

pub const DEFAULT_API_URL: &str = "https://api.linear.app/graphql";

#[derive(Debug, Clone)]
pub struct LinearSettings {
    /// Every secret a webhook may be signed with (several while one is being rotated).
    /// Empty: Linear is not configured.
    pub webhook_secrets: Vec<SecretString>,
    /// A personal API key or the agent's OAuth token, for comments, attachments and
    /// agent activities.
    pub api_key: Option<SecretString>,
    pub api_url: String,
    /// Adding this label to an issue starts a task.
    pub label: String,
    /// Team key → repository (`ENG=acme/api`), for issues that do not name one.
    pub repos: Vec<(String, String)>,
}

impl LinearSettings {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let webhook_secrets = crate::config::secret_list(get("LINEAR_WEBHOOK_SECRET"));
        let api_key = get("LINEAR_API_KEY").map(|k| SecretString::from(k.trim().to_owned()));
        if api_key.is_some() == webhook_secrets.is_empty() {
            let (var, problem) = if api_key.is_some() {
                (
                    "LINEAR_WEBHOOK_SECRET",
                    "required with LINEAR_API_KEY: the signing secret of the Linear webhook (or of the agent's OAuth app)",
                )
            } else {
                (
                    "LINEAR_API_KEY",
                    "required with LINEAR_WEBHOOK_SECRET: a Linear API key or the agent's OAuth access token, so maur can answer in Linear",
                )
            };
            return Err(ConfigError::new(var, problem));
        }
        let api_url = get("LINEAR_API_URL")
            .map(|u| u.trim().to_owned())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        if url::Url::parse(&api_url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
            return Err(ConfigError::new(
                "LINEAR_API_URL",
                format!("expected an http(s) URL such as {DEFAULT_API_URL}, got {api_url:?}"),
            ));
        }
        let mut repos = Vec::new();
        for pair in get("MAUR_LINEAR_REPOS").unwrap_or_default().split(',') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            match pair.split_once('=') {
                Some((team, repo)) if !team.trim().is_empty() && !repo.trim().is_empty() => {
                    repos.push((team.trim().to_ascii_uppercase(), repo.trim().to_owned()));
                }
                _ => {
                    return Err(ConfigError::new(
                        "MAUR_LINEAR_REPOS",
                        format!(
                            "expected TEAM=owner/name pairs, comma-separated (ENG=acme/api,WEB=acme/web), got {pair:?}"
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            webhook_secrets,
            api_key,
            api_url,
            label: get("MAUR_LINEAR_LABEL").unwrap_or_else(|| "maur".to_owned()),
            repos,
        })
    }

    pub fn own_secrets(&self) -> Vec<String> {
        self.api_key
            .iter()
            .chain(&self.webhook_secrets)
            .map(|s| s.expose_secret().to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<LinearSettings, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        LinearSettings::from_lookup(&|name: &str| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn key_secret_and_the_team_map() {
        let s = parse(&[]).unwrap();
        assert!(s.api_key.is_none() && s.webhook_secrets.is_empty());
        assert_eq!(s.api_url, DEFAULT_API_URL);
        assert_eq!(
            parse(&[("LINEAR_API_KEY", "k")]).unwrap_err().var,
            "LINEAR_WEBHOOK_SECRET"
        );
        assert_eq!(
            parse(&[("LINEAR_WEBHOOK_SECRET", "s")]).unwrap_err().var,
            "LINEAR_API_KEY"
        );
        let s = parse(&[
            ("LINEAR_API_KEY", "k"),
            ("LINEAR_WEBHOOK_SECRET", "s1,s2"),
            (
                "MAUR_LINEAR_REPOS",
                "eng=acme/api, WEB=https://gitlab.example/acme/web",
            ),
        ])
        .unwrap();
        assert_eq!(s.webhook_secrets.len(), 2);
        assert_eq!(
            s.repos,
            vec![
                ("ENG".into(), "acme/api".into()),
                ("WEB".into(), "https://gitlab.example/acme/web".into())
            ]
        );
        assert_eq!(
            parse(&[("MAUR_LINEAR_REPOS", "acme/api")]).unwrap_err().var,
            "MAUR_LINEAR_REPOS"
        );
    }
}
