//! Every environment variable maur reads, parsed once at start into one typed struct.
//!
//! Parsing is a pure function of a lookup closure so it is unit-tested without touching
//! the process environment, and nothing on a request path ever reads `std::env`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::repo::RepoRef;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/maur";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentKind {
    OpenCode,
    /// A shell template with `{prompt_file}` and `{workdir}`.
    Command(String),
}

/// Everything about running the coding agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub kind: AgentKind,
    pub llm_api: String,
    pub llm_token: Option<SecretString>,
    pub llm_model: String,
    pub opencode_bin: String,
    pub opencode_project_config: bool,
    pub timeout: Duration,
    pub max_log: usize,
    pub sandbox: crate::agent::sandbox::Sandbox,
    /// Host variables passed to the agent by name (private registries, say), read at start.
    pub pass_env: Vec<(String, String)>,
    /// Run in the checkout after the agent (e.g. the test suite); failing fails the task.
    pub check_command: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: SecretString,
    pub db_pool_size: u32,
    pub listen: SocketAddr,
    /// Empty when unset; `serve` and `up` refuse to start without one (see [`Config::require_api`]).
    pub bearer_tokens: Vec<SecretString>,
    pub data_dir: PathBuf,
    pub worker_concurrency: usize,
    pub worker_id: String,
    pub log_format: LogFormat,
    pub max_body: usize,
    pub default_repo: Option<RepoRef>,
    pub shutdown_grace: Duration,
    pub max_attempts: i32,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub retry_base: Duration,
    pub agent: AgentConfig,
    pub git_author_name: String,
    pub git_author_email: String,
    pub allow_workflow_changes: bool,
    pub max_file_bytes: u64,
    pub github: crate::github::settings::GitHubSettings,
    pub gitlab: crate::gitlab::settings::GitLabSettings,
    pub linear: crate::linear::settings::LinearSettings,
    /// Dollars per million tokens, for the cost shown in progress comments.
    pub llm_price_input: Option<f64>,
    pub llm_price_output: Option<f64>,
    /// At most one edit of a progress comment per task per this interval (final states go
    /// out at once): forges rate-limit busy bots.
    pub report_interval: Duration,
    /// The URL people and GitHub reach this maur at (for the App manifest).
    pub public_url: Option<String>,
}

/// A configuration problem, always naming the variable and what it expects. The value is
/// echoed only for variables that cannot hold a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
            problem: problem.into(),
        }
    }
}

impl Config {
    /// Reads the process environment (after `.env`, which `main` loads).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        // Unset and empty are the same: `.env` templates often leave `FOO=` lines blank.
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());

        let (db_var, raw_db) = match (get("DATABASE_URL"), get("DB_URI")) {
            (Some(url), _) => ("DATABASE_URL", url),
            (None, Some(url)) => ("DB_URI", url),
            (None, None) => ("DATABASE_URL", DEFAULT_DATABASE_URL.to_owned()),
        };
        let database_url = normalize_database_url(db_var, &raw_db)?;

        let bearer_tokens = match get("MAUR_ADMIN_TOKEN").or_else(|| get("MAUR_BEARER_TOKEN")) {
            Some(list) => {
                let var = if get("MAUR_ADMIN_TOKEN").is_some() {
                    "MAUR_ADMIN_TOKEN"
                } else {
                    "MAUR_BEARER_TOKEN"
                };
                parse_secret_list(var, &list)?
            }
            None => Vec::new(),
        };

        let default_repo = match get("MAUR_DEFAULT_REPO") {
            Some(raw) => Some(RepoRef::parse(&raw).map_err(|e| {
                ConfigError::new("MAUR_DEFAULT_REPO", format!("{e} (got {raw:?})"))
            })?),
            None => None,
        };

        let log_format = match get("MAUR_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "MAUR_LOG_FORMAT",
                    format!("expected `text` or `json`, got {other:?}"),
                ));
            }
        };

        let lease = duration(&get, "MAUR_LEASE", Duration::from_secs(60))?;
        if lease < Duration::from_secs(2) {
            return Err(ConfigError::new(
                "MAUR_LEASE",
                "expected at least 2s: the worker renews it at a quarter of its length",
            ));
        }

        let agent = AgentConfig {
            kind: match get("MAUR_AGENT").as_deref().map(str::trim) {
                None | Some("opencode") => AgentKind::OpenCode,
                Some("command") => AgentKind::Command(get("MAUR_AGENT_COMMAND").ok_or_else(|| {
                    ConfigError::new(
                        "MAUR_AGENT_COMMAND",
                        "required with MAUR_AGENT=command: a shell command using {prompt_file} and {workdir}",
                    )
                })?),
                Some(other) => {
                    return Err(ConfigError::new(
                        "MAUR_AGENT",
                        format!("expected `opencode` or `command`, got {other:?}"),
                    ));
                }
            },
            llm_api: get("MAUR_LLM_API").unwrap_or_else(|| "http://127.0.0.1:11434/v1".to_owned()),
            llm_token: get("MAUR_LLM_TOKEN").map(SecretString::from),
            llm_model: get("MAUR_LLM_MODEL").unwrap_or_else(|| "qwen3.5:4b".to_owned()),
            opencode_bin: get("MAUR_OPENCODE_BIN").unwrap_or_else(|| "opencode".to_owned()),
            opencode_project_config: flag(&get, "MAUR_OPENCODE_PROJECT_CONFIG", true)?,
            timeout: duration(&get, "MAUR_AGENT_TIMEOUT", Duration::from_secs(30 * 60))?,
            max_log: size(&get, "MAUR_AGENT_MAX_LOG", 2 * 1024 * 1024)?,
            pass_env: pass_env(&get)?,
            check_command: get("MAUR_CHECK_COMMAND"),
            sandbox: match get("MAUR_SANDBOX").as_deref().map(str::trim) {
                None | Some("none") => crate::agent::sandbox::Sandbox::None,
                Some("bwrap") => crate::agent::sandbox::Sandbox::Bwrap,
                Some(other) => {
                    return Err(ConfigError::new(
                        "MAUR_SANDBOX",
                        format!("expected `none` or `bwrap`, got {other:?}"),
                    ));
                }
            },
        };

        Ok(Self {
            agent,
            github: crate::github::settings::GitHubSettings::from_lookup(&get)?,
            gitlab: crate::gitlab::settings::GitLabSettings::from_lookup(&get)?,
            linear: crate::linear::settings::LinearSettings::from_lookup(&get)?,
            llm_price_input: price(&get, "MAUR_LLM_PRICE_INPUT")?,
            llm_price_output: price(&get, "MAUR_LLM_PRICE_OUTPUT")?,
            public_url: match get("MAUR_PUBLIC_URL") {
                Some(raw) => {
                    let url = raw.trim().trim_end_matches('/').to_owned();
                    match url::Url::parse(&url) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                            Some(url)
                        }
                        _ => {
                            return Err(ConfigError::new(
                                "MAUR_PUBLIC_URL",
                                format!(
                                    "expected the public http(s) URL of this maur, such as https://maur.example.com, got {raw:?}"
                                ),
                            ));
                        }
                    }
                }
                None => None,
            },
            report_interval: duration(&get, "MAUR_REPORT_INTERVAL", Duration::from_secs(3))?,
            git_author_name: get("MAUR_GIT_AUTHOR_NAME").unwrap_or_else(|| "maur".to_owned()),
            git_author_email: get("MAUR_GIT_AUTHOR_EMAIL")
                .unwrap_or_else(|| "maur@users.noreply.localhost".to_owned()),
            allow_workflow_changes: flag(&get, "MAUR_ALLOW_WORKFLOW_CHANGES", false)?,
            max_file_bytes: size(&get, "MAUR_MAX_FILE_BYTES", 5 * 1024 * 1024)? as u64,
            database_url,
            db_pool_size: number(&get, "MAUR_DB_POOL_SIZE", 16, 1..=1000)?,
            listen: match get("MAUR_LISTEN") {
                Some(raw) => raw.trim().parse().map_err(|_| {
                    ConfigError::new(
                        "MAUR_LISTEN",
                        format!("expected an address and port such as 0.0.0.0:8000, got {raw:?}"),
                    )
                })?,
                None => SocketAddr::from(([0, 0, 0, 0], 8000)),
            },
            bearer_tokens,
            data_dir: get("MAUR_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("./.maur")),
            worker_concurrency: number(&get, "MAUR_WORKER_CONCURRENCY", 2, 1..=256)?,
            worker_id: get("MAUR_WORKER_ID").unwrap_or_else(default_worker_id),
            log_format,
            max_body: size(&get, "MAUR_MAX_BODY", 5 * 1024 * 1024)?,
            default_repo,
            shutdown_grace: duration(&get, "MAUR_SHUTDOWN_GRACE", Duration::from_secs(30))?,
            max_attempts: number(&get, "MAUR_MAX_ATTEMPTS", 3, 1..=100)?,
            lease,
            poll_interval: duration(&get, "MAUR_POLL_INTERVAL", Duration::from_secs(5))?,
            retry_base: duration(&get, "MAUR_RETRY_BASE", Duration::from_secs(10))?,
        })
    }

    /// The API cannot run open to the world: insist on a token before binding a port.
    pub fn require_api(&self) -> Result<(), ConfigError> {
        if self.bearer_tokens.is_empty() {
            return Err(ConfigError::new(
                "MAUR_BEARER_TOKEN",
                "required for `maur serve` and `maur up`: set one or more API tokens, comma-separated (MAUR_ADMIN_TOKEN is accepted too)",
            ));
        }
        Ok(())
    }

    /// Values that must never appear in a change maur pushes: every secret it holds.
    pub fn own_secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self
            .bearer_tokens
            .iter()
            .map(|t| t.expose_secret().to_owned())
            .collect();
        secrets.extend(
            self.agent
                .llm_token
                .iter()
                .map(|t| t.expose_secret().to_owned()),
        );
        secrets.extend(self.github.own_secrets());
        secrets.extend(self.gitlab.own_secrets());
        secrets.extend(self.linear.own_secrets());
        if let Ok(url) = url::Url::parse(self.database_url.expose_secret())
            && let Some(pw) = url.password()
        {
            secrets.push(pw.to_owned());
        }
        secrets
    }

    /// The database URL with any password replaced, for messages and logs.
    pub fn database_url_masked(&self) -> String {
        mask_url(self.database_url.expose_secret())
    }
}

fn price(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Option<f64>, ConfigError> {
    match get(var) {
        None => Ok(None),
        Some(raw) => raw
            .trim()
            .trim_start_matches('$')
            .parse::<f64>()
            .ok()
            .filter(|p| p.is_finite() && *p >= 0.0)
            .map(Some)
            .ok_or_else(|| {
                ConfigError::new(
                    var,
                    format!("expected dollars per million tokens, such as 0.15, got {raw:?}"),
                )
            }),
    }
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "maur".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Accepts the SQLAlchemy-style names Python Maur users have (`postgresql+asyncpg://`).
fn normalize_database_url(var: &'static str, raw: &str) -> Result<SecretString, ConfigError> {
    let raw = raw.trim();
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(ConfigError::new(
            var,
            "expected a URL such as postgres://user:password@host:5432/maur",
        ));
    };
    let scheme = scheme.to_ascii_lowercase();
    let base = scheme.split('+').next().unwrap_or_default();
    match base {
        "postgres" | "postgresql" => Ok(SecretString::from(format!("postgres://{rest}"))),
        "mysql" | "mariadb" | "sqlite" => Err(ConfigError::new(
            var,
            format!("maur stores its queue in PostgreSQL only; got a {base}:// URL"),
        )),
        _ => Err(ConfigError::new(
            var,
            format!("expected a postgres:// URL, got scheme {scheme:?}"),
        )),
    }
}

pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("****"));
            }
            url.to_string()
        }
        // Unparseable: show only the scheme, a password could be anywhere in it.
        Err(_) => match raw.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => "(unparseable URL)".to_owned(),
        },
    }
}

/// Comma-separated secrets (several while one is rotated), blanks dropped.
pub fn secret_list(raw: Option<String>) -> Vec<SecretString> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_owned()))
        .collect()
}

fn parse_secret_list(var: &'static str, raw: &str) -> Result<Vec<SecretString>, ConfigError> {
    let tokens: Vec<SecretString> = raw
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| SecretString::from(t.to_owned()))
        .collect();
    if tokens.is_empty() {
        return Err(ConfigError::new(
            var,
            "expected one or more tokens, comma-separated",
        ));
    }
    if tokens.iter().any(|t| t.expose_secret().len() < 16) {
        return Err(ConfigError::new(
            var,
            "each token must be at least 16 characters (try `openssl rand -hex 32`)",
        ));
    }
    Ok(tokens)
}

fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = get(var) else {
        return Ok(default);
    };
    match raw.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            var,
            format!(
                "expected a whole number from {} to {}, got {raw:?}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// Names maur never hands to an agent, whatever MAUR_AGENT_ENV says.
const NEVER_PASSED: &[&str] = &[
    "DATABASE_URL",
    "DB_URI",
    "MAUR_BEARER_TOKEN",
    "MAUR_ADMIN_TOKEN",
    "GITHUB_TOKEN",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_WEBHOOK_SECRET",
    "GITLAB_TOKEN",
    "GITLAB_WEBHOOK_SECRET",
    "LINEAR_API_KEY",
    "LINEAR_WEBHOOK_SECRET",
];

fn pass_env(get: &impl Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(list) = get("MAUR_AGENT_ENV") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if NEVER_PASSED.contains(&name) {
            return Err(ConfigError::new(
                "MAUR_AGENT_ENV",
                format!("{name} is one of maur's own secrets and is never given to the agent"),
            ));
        }
        match get(name) {
            Some(value) => out.push((name.to_owned(), value)),
            None => {
                return Err(ConfigError::new(
                    "MAUR_AGENT_ENV",
                    format!("names {name}, which is not set"),
                ));
            }
        }
    }
    Ok(out)
}

fn flag(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(var).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError::new(
            var,
            format!("expected 1 or 0 (true or false), got {other:?}"),
        )),
    }
}

fn duration(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(raw) => parse_duration(&raw).ok_or_else(|| {
            ConfigError::new(
                var,
                format!("expected a duration such as 30s, 5m, 1h or 250ms, got {raw:?}"),
            )
        }),
    }
}

fn size(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: usize,
) -> Result<usize, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(raw) => parse_size(&raw).filter(|n| *n > 0).ok_or_else(|| {
            ConfigError::new(
                var,
                format!("expected a size such as 5MiB, 512KiB or 1048576, got {raw:?}"),
            )
        }),
    }
}

/// `30`, `30s`, `250ms`, `5m`, `1h`; a bare number is seconds.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(raw.len());
    let (num, unit) = raw.split_at(split);
    let value: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" | "mins" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// `1048576`, `512KiB`, `5MiB`, `5MB`, `1GiB` (K/M/G are binary, as people usually mean).
pub fn parse_size(raw: &str) -> Option<usize> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (num, unit) = raw.split_at(split);
    let value: usize = num.parse().ok()?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    value.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_what_the_readme_says() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.database_url.expose_secret(), DEFAULT_DATABASE_URL);
        assert_eq!(c.listen.to_string(), "0.0.0.0:8000");
        assert_eq!(c.worker_concurrency, 2);
        assert_eq!(c.max_body, 5 * 1024 * 1024);
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.data_dir, PathBuf::from("./.maur"));
        assert!(c.bearer_tokens.is_empty());
        assert_eq!(c.require_api().unwrap_err().var, "MAUR_BEARER_TOKEN");
    }

    #[test]
    fn python_maur_names_are_accepted() {
        let c = parse(&[
            ("DB_URI", "postgresql+asyncpg://u:pw@db:5432/maur"),
            ("MAUR_BEARER_TOKEN", "0123456789abcdef, fedcba9876543210"),
        ])
        .unwrap();
        assert_eq!(
            c.database_url.expose_secret(),
            "postgres://u:pw@db:5432/maur"
        );
        assert_eq!(c.bearer_tokens.len(), 2);
        assert_eq!(c.database_url_masked(), "postgres://u:****@db:5432/maur");
    }

    #[test]
    fn database_url_wins_over_db_uri() {
        let c = parse(&[
            ("DATABASE_URL", "postgres://a@h/x"),
            ("DB_URI", "postgres://b@h/y"),
        ])
        .unwrap();
        assert_eq!(c.database_url.expose_secret(), "postgres://a@h/x");
    }

    #[test]
    fn errors_name_the_variable_and_what_it_expects() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "MAUR_WORKER_CONCURRENCY",
                "lots",
                "whole number from 1 to 256",
            ),
            ("MAUR_WORKER_CONCURRENCY", "0", "whole number from 1 to 256"),
            ("MAUR_LISTEN", "8000", "address and port"),
            ("MAUR_LOG_FORMAT", "yaml", "`text` or `json`"),
            ("MAUR_MAX_BODY", "huge", "size such as 5MiB"),
            ("MAUR_SHUTDOWN_GRACE", "soon", "duration such as 30s"),
            ("DB_URI", "mysql+aiomysql://u@h/db", "PostgreSQL only"),
            ("DATABASE_URL", "not a url", "postgres://"),
            ("MAUR_BEARER_TOKEN", "short", "at least 16 characters"),
            ("MAUR_DEFAULT_REPO", "not a repo!", "owner/name"),
            ("MAUR_AGENT", "claude", "`opencode` or `command`"),
            ("MAUR_SANDBOX", "docker", "`none` or `bwrap`"),
            ("MAUR_ALLOW_WORKFLOW_CHANGES", "maybe", "1 or 0"),
            ("MAUR_AGENT_TIMEOUT", "forever", "duration such as 30s"),
        ];
        for (var, value, expected) in cases {
            let err = parse(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, *var, "{var}={value}");
            assert!(
                err.to_string().contains(expected),
                "{var}={value}: {err} should mention {expected}"
            );
        }
    }

    #[test]
    fn the_command_agent_needs_its_command() {
        let err = parse(&[("MAUR_AGENT", "command")]).unwrap_err();
        assert_eq!(err.var, "MAUR_AGENT_COMMAND");
        let c = parse(&[
            ("MAUR_AGENT", "command"),
            ("MAUR_AGENT_COMMAND", "aider {prompt_file}"),
        ])
        .unwrap();
        assert_eq!(
            c.agent.kind,
            AgentKind::Command("aider {prompt_file}".into())
        );
        let c = parse(&[]).unwrap();
        assert_eq!(c.agent.kind, AgentKind::OpenCode);
        assert_eq!(c.agent.llm_api, "http://127.0.0.1:11434/v1");
        assert_eq!(c.agent.llm_model, "qwen3.5:4b");
        assert_eq!(c.agent.timeout, Duration::from_secs(1800));
        assert_eq!(c.agent.max_log, 2 << 20);
        assert_eq!(c.max_file_bytes, 5 << 20);
    }

    #[test]
    fn chosen_variables_reach_the_agent_but_never_maurs_secrets() {
        let c = parse(&[
            ("MAUR_AGENT_ENV", "NPM_TOKEN, PIP_INDEX_URL"),
            ("NPM_TOKEN", "n"),
            ("PIP_INDEX_URL", "u"),
        ])
        .unwrap();
        assert_eq!(
            c.agent.pass_env,
            [
                ("NPM_TOKEN".into(), "n".into()),
                ("PIP_INDEX_URL".into(), "u".into())
            ]
        );
        let err = parse(&[("MAUR_AGENT_ENV", "DATABASE_URL")]).unwrap_err();
        assert!(
            err.to_string().contains("never given to the agent"),
            "{err}"
        );
        let err = parse(&[("MAUR_AGENT_ENV", "MISSING")]).unwrap_err();
        assert!(
            err.to_string().contains("MISSING, which is not set"),
            "{err}"
        );
    }

    #[test]
    fn own_secrets_cover_tokens_and_passwords() {
        let c = parse(&[
            ("MAUR_BEARER_TOKEN", "0123456789abcdef"),
            ("MAUR_LLM_TOKEN", "llm-key"),
            ("DATABASE_URL", "postgres://u:pw-123@h/db"),
        ])
        .unwrap();
        assert_eq!(c.own_secrets(), ["0123456789abcdef", "llm-key", "pw-123"]);
    }

    #[test]
    fn secret_values_are_not_echoed() {
        let err = parse(&[("MAUR_BEARER_TOKEN", "tooshort")]).unwrap_err();
        assert!(!err.to_string().contains("tooshort"));
        let err = parse(&[("DATABASE_URL", "mysql://u:hunter2@h/db")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn empty_values_mean_unset() {
        let c = parse(&[("MAUR_WORKER_CONCURRENCY", ""), ("MAUR_LISTEN", " ")]).unwrap();
        assert_eq!(c.worker_concurrency, 2);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("5MiB"), Some(5 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn masking_hides_passwords_only() {
        assert_eq!(
            mask_url("postgres://maur:s3cret@db.internal:5432/maur"),
            "postgres://maur:****@db.internal:5432/maur"
        );
        assert_eq!(
            mask_url("postgres://postgres@127.0.0.1:5432/maur"),
            "postgres://postgres@127.0.0.1:5432/maur"
        );
    }
}
