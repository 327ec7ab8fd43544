//! Repositories on this machine (a path or a `file://` URL): pushing puts the branch into
//! that repository; there are no pull requests, so the task's result names the branch.

use async_trait::async_trait;

use super::{Forge, ForgeError, GitCredentials, PullRequest, PullRequestSpec};
use crate::repo::{RepoKind, RepoRef};

pub struct LocalForge;

#[async_trait]
impl Forge for LocalForge {
    fn name(&self) -> &'static str {
        "local"
    }

    fn serves(&self, repo: &RepoRef) -> bool {
        matches!(repo.kind, RepoKind::Path | RepoKind::File)
    }

    fn clone_url(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        match repo.kind {
            RepoKind::Path => Ok(repo.url.clone()),
            RepoKind::File => Ok(repo
                .url
                .strip_prefix("file://")
                .unwrap_or(&repo.url)
                .to_owned()),
            _ => Err(ForgeError::Fatal(format!(
                "{repo} is not a local repository"
            ))),
        }
    }

    async fn git_credentials(&self, _repo: &RepoRef) -> Result<Option<GitCredentials>, ForgeError> {
        Ok(None)
    }

    async fn open_pull_request(
        &self,
        _spec: &PullRequestSpec<'_>,
    ) -> Result<Option<PullRequest>, ForgeError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_paths_and_file_urls_only() {
        let path = RepoRef::parse("/srv/git/api").unwrap();
        let file = RepoRef::parse("file:///srv/git/api.git").unwrap();
        let slug = RepoRef::parse("acme/api").unwrap();
        assert!(LocalForge.serves(&path) && LocalForge.serves(&file));
        assert!(!LocalForge.serves(&slug));
        assert_eq!(LocalForge.clone_url(&file).unwrap(), "/srv/git/api.git");
        assert!(LocalForge.clone_url(&slug).is_err());
    }
}
