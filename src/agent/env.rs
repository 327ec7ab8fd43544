//! The agent's environment, built from nothing: it never inherits maur's, so no forge token,
//! database URL or API token can reach it.

use std::path::Path;

/// PATH and LANG from the host (neither is secret; tools the repository's tests need live on
/// PATH), a fresh HOME, TMPDIR and XDG dirs inside the task's temporary home, then `extra`.
pub fn build(
    host_path: Option<&str>,
    host_lang: Option<&str>,
    home: &Path,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let home_dir = home.to_string_lossy().into_owned();
    let under = |p: &str| home.join(p).to_string_lossy().into_owned();
    let mut env = vec![
        (
            "PATH".to_owned(),
            host_path
                .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
                .to_owned(),
        ),
        ("LANG".to_owned(), host_lang.unwrap_or("C.UTF-8").to_owned()),
        ("HOME".to_owned(), home_dir),
        ("TMPDIR".to_owned(), under("tmp")),
        ("XDG_CONFIG_HOME".to_owned(), under(".config")),
        ("XDG_DATA_HOME".to_owned(), under(".local/share")),
        ("XDG_STATE_HOME".to_owned(), under(".local/state")),
        ("XDG_CACHE_HOME".to_owned(), under(".cache")),
        // Git inside the sandbox must not prompt or read the host's configuration.
        ("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned()),
        ("GIT_CONFIG_NOSYSTEM".to_owned(), "1".to_owned()),
    ];
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// The directories `build` points into; created before the agent starts.
pub const HOME_DIRS: &[&str] = &["tmp", ".config", ".local/share", ".local/state", ".cache"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_listed() {
        let env = build(
            Some("/usr/bin:/bin"),
            None,
            Path::new("/tmp/maur-home-1"),
            &[
                ("MAUR_LLM_TOKEN".into(), "k".into()),
                ("LANG".into(), "en_US.UTF-8".into()),
            ],
        );
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "HOME",
                "TMPDIR",
                "XDG_CONFIG_HOME",
                "XDG_DATA_HOME",
                "XDG_STATE_HOME",
                "XDG_CACHE_HOME",
                "GIT_TERMINAL_PROMPT",
                "GIT_CONFIG_NOSYSTEM",
                "MAUR_LLM_TOKEN",
                "LANG"
            ]
        );
        assert!(env.contains(&("XDG_CACHE_HOME".into(), "/tmp/maur-home-1/.cache".into())));
        assert!(env.contains(&("LANG".into(), "en_US.UTF-8".into())));
    }
}
