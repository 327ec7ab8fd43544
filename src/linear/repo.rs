//! Which repository a Linear ticket is about, in order: a GitHub or GitLab repository or
//! pull/merge request linked to it (attachments first, then the description), a
//! `repo:owner/name` line in the description, the team's entry in `MAUR_LINEAR_REPOS`, then
//! `MAUR_DEFAULT_REPO`. Pure.

use std::sync::OnceLock;

use regex::Regex;

/// Where the forges live, to recognise their links.
pub struct Hosts<'a> {
    /// GitHub's web URL (`https://github.com` or an Enterprise host).
    pub github: Option<&'a str>,
    /// GitLab's URL, when GitLab is configured.
    pub gitlab: Option<&'a str>,
}

pub struct Ticket<'a> {
    pub description: &'a str,
    /// URLs attached to the issue (Linear attachments).
    pub attachments: &'a [String],
    /// The team's key (`ENG`).
    pub team: Option<&'a str>,
}

fn urls() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r#"https?://[^\s)<>\]"'`]+"#).expect("valid regex"))
}

fn repo_line() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?mi)^\s*repo:\s*(\S+)\s*$").expect("valid regex"))
}

/// The repository (`owner/name`, or a GitLab project URL) a link points into.
fn from_link(url: &str, hosts: &Hosts) -> Option<String> {
    let url = url.trim_end_matches(['.', ',', ';', ':']);
    if let Some(rest) = hosts
        .github
        .and_then(|h| url.strip_prefix(h))
        .and_then(|r| r.strip_prefix('/'))
    {
        let mut parts = rest.split(['/', '?', '#']).filter(|p| !p.is_empty());
        let (owner, name) = (parts.next()?, parts.next()?);
        let name = name.trim_end_matches(".git");
        let reserved = [
            "orgs",
            "settings",
            "apps",
            "marketplace",
            "sponsors",
            "features",
        ];
        if reserved.contains(&owner) || name.is_empty() {
            return None;
        }
        return Some(format!("{owner}/{name}"));
    }
    if let Some(base) = hosts.gitlab
        && let Some(rest) = url.strip_prefix(base).and_then(|r| r.strip_prefix('/'))
    {
        let path = rest.split("/-/").next()?.split(['?', '#']).next()?;
        let path = path.trim_end_matches('/').trim_end_matches(".git");
        if path.split('/').filter(|p| !p.is_empty()).count() < 2 {
            return None;
        }
        return Some(format!("{base}/{path}"));
    }
    None
}

pub fn resolve(
    ticket: &Ticket,
    hosts: &Hosts,
    teams: &[(String, String)],
    default: Option<&str>,
) -> Option<String> {
    let linked = ticket
        .attachments
        .iter()
        .map(String::as_str)
        .chain(urls().find_iter(ticket.description).map(|m| m.as_str()))
        .find_map(|url| from_link(url, hosts));
    if linked.is_some() {
        return linked;
    }
    // Anyone who can write a ticket writes this line: only a forge repository, never a
    // path or file:// URL on maur's own disk.
    if let Some(line) = repo_line().captures(ticket.description) {
        let named = line[1].trim_end_matches(['.', ',']);
        if matches!(
            crate::repo::RepoRef::parse(named).map(|r| r.kind),
            Ok(crate::repo::RepoKind::Slug | crate::repo::RepoKind::Http)
        ) {
            return Some(named.to_owned());
        }
    }
    if let Some(team) = ticket.team
        && let Some((_, repo)) = teams.iter().find(|(t, _)| t.eq_ignore_ascii_case(team))
    {
        return Some(repo.clone());
    }
    default.map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: Hosts = Hosts {
        github: Some("https://github.com"),
        gitlab: Some("https://gitlab.acme.dev"),
    };

    fn resolve_desc(
        description: &str,
        attachments: &[String],
        team: Option<&str>,
    ) -> Option<String> {
        let teams = vec![("ENG".to_owned(), "acme/api".to_owned())];
        resolve(
            &Ticket {
                description,
                attachments,
                team,
            },
            &HOSTS,
            &teams,
            Some("acme/default"),
        )
    }

    #[test]
    fn links_win_then_the_repo_line_then_the_team_then_the_default() {
        assert_eq!(
            resolve_desc("See https://github.com/acme/web/pull/12.", &[], Some("ENG")).as_deref(),
            Some("acme/web")
        );
        assert_eq!(
            resolve_desc(
                "",
                &["https://gitlab.acme.dev/group/sub/app/-/merge_requests/3".into()],
                None
            )
            .as_deref(),
            Some("https://gitlab.acme.dev/group/sub/app")
        );
        assert_eq!(
            resolve_desc(
                "Fails on https://github.com/acme/a but see attachment",
                &["https://github.com/acme/b".into()],
                None
            )
            .as_deref(),
            Some("acme/b"),
            "attachments first"
        );
        assert_eq!(
            resolve_desc("Broken.\nrepo: acme/tools\n", &[], Some("ENG")).as_deref(),
            Some("acme/tools")
        );
        for local in ["repo: /etc", "repo: file:///srv/git/x", "repo: ./here"] {
            assert_eq!(
                resolve_desc(local, &[], Some("ENG")).as_deref(),
                Some("acme/api"),
                "{local}"
            );
        }
        assert_eq!(
            resolve_desc("Broken.", &[], Some("eng")).as_deref(),
            Some("acme/api")
        );
        assert_eq!(
            resolve_desc("Broken.", &[], Some("OPS")).as_deref(),
            Some("acme/default")
        );
        let teams = vec![];
        assert_eq!(
            resolve(
                &Ticket {
                    description: "x",
                    attachments: &[],
                    team: None
                },
                &HOSTS,
                &teams,
                None
            ),
            None
        );
    }

    #[test]
    fn links_that_are_not_repositories_are_skipped() {
        assert_eq!(
            resolve_desc(
                "https://github.com/orgs/acme/projects/1 and https://example.com/x/y",
                &[],
                Some("OPS")
            )
            .as_deref(),
            Some("acme/default")
        );
        assert_eq!(
            resolve_desc("https://github.com/acme", &[], None).as_deref(),
            Some("acme/default")
        );
        assert_eq!(
            resolve_desc("(https://github.com/acme/api.git)", &[], None).as_deref(),
            Some("acme/api")
        );
    }
}
