//! What a change may not contain before maur pushes it: workflow edits (unless allowed),
//! huge files, and anything that looks like a credential. Pure: given paths, sizes and added
//! lines, say what is wrong.

use std::sync::LazyLock;

use regex::bytes::RegexSet;

#[derive(Debug, Clone)]
pub struct GuardRules {
    pub allow_workflow_changes: bool,
    pub max_file_bytes: u64,
    /// Values of maur's own secrets: finding one in a diff means the agent leaked it.
    pub own_secrets: Vec<String>,
}

/// Why a change was refused; shown to the person who asked, so it never quotes the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error(
        "the change edits {0}, a CI definition; maur does not push CI changes unless MAUR_ALLOW_WORKFLOW_CHANGES=1"
    )]
    Workflow(String),
    #[error(
        "the change adds {path} ({bytes} bytes), over the {max}-byte limit (MAUR_MAX_FILE_BYTES)"
    )]
    TooLarge { path: String, bytes: u64, max: u64 },
    #[error("the change adds what looks like a credential ({what}) to {path}; refusing to push it")]
    Credential { path: String, what: &'static str },
}

/// Files that define CI: a change to them runs with the repository's CI secrets.
fn is_ci_definition(path: &str) -> bool {
    const DIRS: &[&str] = &[
        ".github/workflows/",
        ".github/actions/",
        ".gitlab/ci/",
        ".circleci/",
        ".buildkite/",
    ];
    const FILES: &[&str] = &[
        ".gitlab-ci.yml",
        ".gitlab-ci.yaml",
        "Jenkinsfile",
        "azure-pipelines.yml",
        ".travis.yml",
    ];
    DIRS.iter().any(|d| path.starts_with(d))
        || FILES.contains(&path)
        || (path.starts_with(".github/") && path.ends_with("action.yml"))
}

pub fn check_path(path: &str, rules: &GuardRules) -> Result<(), Violation> {
    if !rules.allow_workflow_changes && is_ci_definition(path) {
        return Err(Violation::Workflow(path.to_owned()));
    }
    Ok(())
}

pub fn check_size(path: &str, bytes: u64, rules: &GuardRules) -> Result<(), Violation> {
    if bytes > rules.max_file_bytes {
        return Err(Violation::TooLarge {
            path: path.to_owned(),
            bytes,
            max: rules.max_file_bytes,
        });
    }
    Ok(())
}

const SHAPES: &[(&str, &str)] = &[
    (
        r"-----BEGIN ([A-Z]+ )*PRIVATE KEY( BLOCK)?-----",
        "a private key",
    ),
    (
        r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}",
        "a GitHub token",
    ),
    (r"\bgithub_pat_[A-Za-z0-9_]{40,}", "a GitHub token"),
    (r"\bglpat-[A-Za-z0-9_\-]{20,}", "a GitLab token"),
    (r"\blin_(api|oauth)_[A-Za-z0-9]{30,}", "a Linear key"),
    (r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", "a Slack token"),
    (r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", "an AWS access key"),
    (r"\bsk-(proj-|ant-)?[A-Za-z0-9_\-]{32,}", "an API key"),
    (r"\bAIza[0-9A-Za-z_\-]{35}", "a Google API key"),
];

static SHAPE_SET: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(SHAPES.iter().map(|(re, _)| *re)).expect("credential patterns compile")
});

/// Scans one added line of `path`.
pub fn check_line(path: &str, line: &[u8], rules: &GuardRules) -> Result<(), Violation> {
    let found = |what| {
        Err(Violation::Credential {
            path: path.to_owned(),
            what,
        })
    };
    if let Some(i) = SHAPE_SET.matches(line).iter().next() {
        return found(SHAPES[i].1);
    }
    for secret in rules.own_secrets.iter().filter(|s| s.len() >= 8) {
        if memfind(line, secret.as_bytes()) {
            return found("one of maur's own secrets");
        }
    }
    Ok(())
}

fn memfind(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> GuardRules {
        GuardRules {
            allow_workflow_changes: false,
            max_file_bytes: 1024,
            own_secrets: vec!["maur-api-token-0123456789".into()],
        }
    }

    #[test]
    fn workflows_need_permission() {
        assert!(check_path(".github/workflows/ci.yml", &rules()).is_err());
        assert!(check_path(".github/actions/setup/action.yml", &rules()).is_err());
        assert!(check_path(".gitlab-ci.yml", &rules()).is_err());
        assert!(check_path("Jenkinsfile", &rules()).is_err());
        assert!(check_path("docs/ci.md", &rules()).is_ok());
        assert!(check_path(".github/CODEOWNERS", &rules()).is_ok());
        let allowed = GuardRules {
            allow_workflow_changes: true,
            ..rules()
        };
        assert!(check_path(".github/workflows/ci.yml", &allowed).is_ok());
    }

    #[test]
    fn sizes() {
        assert!(check_size("a.bin", 1024, &rules()).is_ok());
        let err = check_size("a.bin", 1025, &rules()).unwrap_err();
        assert!(err.to_string().contains("MAUR_MAX_FILE_BYTES"));
    }

    #[test]
    fn credential_shapes_are_caught_without_quoting_them() {
        // Assembled at run time so the repository itself holds nothing token-shaped.
        let leaks: Vec<String> = [
            ("-----BEGIN RSA PRIVATE", " KEY-----"),
            ("-----BEGIN OPENSSH PRIVATE", " KEY-----"),
            ("token = \"ghs", "_16C7e42F292c6912E7710c838347Ae178B4a\""),
            ("GITLAB=glpat", "-xxxxxxxxxxxxxxxxxxxx"),
            ("aws_access_key_id = AKIA", "IOSFODNN7EXAMPLE"),
            (
                "OPENAI_API_KEY=sk-proj",
                "-abcdefghijklmnopqrstuvwxyz0123456789",
            ),
            ("LINEAR=lin_api", "_abcdefghijklmnopqrstuvwxyz0123456789"),
            ("auth: maur-api-token", "-0123456789"),
        ]
        .iter()
        .map(|(a, b)| format!("{a}{b}"))
        .collect();
        for leak in &leaks {
            let err = check_line("config.py", leak.as_bytes(), &rules()).unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains("config.py"), "{shown}");
            assert!(
                !shown.contains(&leak[leak.len() - 8..]),
                "quoted the secret: {shown}"
            );
        }
    }

    #[test]
    fn ordinary_code_passes() {
        let fine: &[&str] = &[
            "fn main() { println!(\"hello\"); }",
            "let sk = compute_key(); // sk-1",
            "See https://docs.github.com/en/rest",
            "BEGIN PRIVATE KEY handling is in keys.rs",
        ];
        for line in fine {
            assert!(
                check_line("src/main.rs", line.as_bytes(), &rules()).is_ok(),
                "{line}"
            );
        }
    }
}
