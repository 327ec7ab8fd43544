//! What a caller may name as "the repository": parsed once at the edge, stored as given plus
//! a canonical form, so the worker never re-interprets user text.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    /// `owner/name` (or `group/sub/name`): resolved against a configured forge.
    Slug,
    /// `https://host/owner/name`, or `http://` for self-hosted forges on a private network.
    Http,
    /// `file:///abs/path`
    File,
    /// `/abs/path`
    Path,
}

impl RepoKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slug => "slug",
            Self::Http => "http",
            Self::File => "file",
            Self::Path => "path",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    pub kind: RepoKind,
    /// Canonical: no credentials, no trailing `.git` or slash.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    #[error("repo is empty: expected owner/name, an https:// or file:// URL, or an absolute path")]
    Empty,
    #[error("repo URL must not contain credentials; maur authenticates with its own forge token")]
    Credentials,
    #[error("SSH repository addresses are not supported; use the https:// URL")]
    Ssh,
    #[error("local repository paths must be absolute")]
    RelativePath,
    #[error("repo URL must be https://host/owner/name without query or fragment")]
    BadUrl,
    #[error("unsupported repo URL scheme {0:?}: expected https://, http:// or file://")]
    Scheme(String),
    #[error("expected owner/name, an https:// or file:// URL, or an absolute path")]
    Unrecognised,
}

impl RepoRef {
    pub fn parse(raw: &str) -> Result<Self, RepoError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(RepoError::Empty);
        }
        if raw.starts_with('/') {
            // A path names a directory exactly: `/srv/git/api.git` is not `/srv/git/api`.
            return Ok(Self {
                kind: RepoKind::Path,
                url: trim_slashes(raw).to_owned(),
            });
        }
        if raw.starts_with("./") || raw.starts_with("../") || raw == "." || raw == ".." {
            return Err(RepoError::RelativePath);
        }
        if let Some((scheme, _)) = raw.split_once("://") {
            return Self::parse_url(raw, &scheme.to_ascii_lowercase());
        }
        if raw.contains('@') && raw.contains(':') {
            return Err(RepoError::Ssh);
        }
        let segments: Vec<&str> = trim_repo_suffix(raw).split('/').collect();
        if segments.len() >= 2 && segments.iter().all(|s| is_name(s)) {
            return Ok(Self {
                kind: RepoKind::Slug,
                url: segments.join("/"),
            });
        }
        Err(RepoError::Unrecognised)
    }

    fn parse_url(raw: &str, scheme: &str) -> Result<Self, RepoError> {
        match scheme {
            "http" | "https" => {}
            "file" => {
                let url = url::Url::parse(raw).map_err(|_| RepoError::BadUrl)?;
                let path = url.to_file_path().map_err(|_| RepoError::BadUrl)?;
                let path = path.to_string_lossy();
                return Ok(Self {
                    kind: RepoKind::File,
                    url: format!("file://{}", trim_slashes(&path)),
                });
            }
            "ssh" | "git" => return Err(RepoError::Ssh),
            other => return Err(RepoError::Scheme(other.to_owned())),
        }
        let url = url::Url::parse(raw).map_err(|_| RepoError::BadUrl)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RepoError::Credentials);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(RepoError::BadUrl);
        }
        let host = url.host_str().ok_or(RepoError::BadUrl)?;
        let path = trim_repo_suffix(url.path().trim_start_matches('/'));
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() < 2 || !segments.iter().all(|s| is_name(s)) {
            return Err(RepoError::BadUrl);
        }
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(Self {
            kind: RepoKind::Http,
            url: format!("{}://{host}{port}/{path}", url.scheme()),
        })
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

fn trim_slashes(s: &str) -> &str {
    match s.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    }
}

fn trim_repo_suffix(s: &str) -> &str {
    let s = s.trim_end_matches('/');
    s.strip_suffix(".git").unwrap_or(s)
}

/// GitHub and GitLab path segments: letters, digits, `.`, `_`, `-`; not `.` or `..`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> (RepoKind, String) {
        let r = RepoRef::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        (r.kind, r.url)
    }

    #[test]
    fn accepted_forms_and_their_canonical_url() {
        assert_eq!(ok("acme/api"), (RepoKind::Slug, "acme/api".into()));
        assert_eq!(ok("acme/api.git"), (RepoKind::Slug, "acme/api".into()));
        assert_eq!(
            ok("group/sub/api"),
            (RepoKind::Slug, "group/sub/api".into())
        );
        assert_eq!(
            ok("https://github.com/acme/api.git/"),
            (RepoKind::Http, "https://github.com/acme/api".into())
        );
        assert_eq!(
            ok("http://127.0.0.1:8080/acme/api"),
            (RepoKind::Http, "http://127.0.0.1:8080/acme/api".into())
        );
        assert_eq!(
            ok("file:///srv/git/api.git"),
            (RepoKind::File, "file:///srv/git/api.git".into())
        );
        assert_eq!(ok("/srv/git/api/"), (RepoKind::Path, "/srv/git/api".into()));
        assert_eq!(
            ok("/srv/git/api.git"),
            (RepoKind::Path, "/srv/git/api.git".into())
        );
    }

    #[test]
    fn rejected_forms_say_why() {
        let err = |raw: &str| RepoRef::parse(raw).unwrap_err();
        assert_eq!(err(""), RepoError::Empty);
        assert_eq!(err("https://x:tok@github.com/a/b"), RepoError::Credentials);
        assert_eq!(err("https://tok@github.com/a/b"), RepoError::Credentials);
        assert_eq!(err("git@github.com:a/b.git"), RepoError::Ssh);
        assert_eq!(err("ssh://git@github.com/a/b"), RepoError::Ssh);
        assert_eq!(err("./repo"), RepoError::RelativePath);
        assert_eq!(err("https://github.com/a"), RepoError::BadUrl);
        assert_eq!(err("https://github.com/a/b?x=1"), RepoError::BadUrl);
        assert_eq!(err("ftp://h/a/b"), RepoError::Scheme("ftp".into()));
        assert_eq!(err("justaname"), RepoError::Unrecognised);
        assert_eq!(err("a/b c"), RepoError::Unrecognised);
        assert_eq!(err("a/../b"), RepoError::Unrecognised);
    }
}
