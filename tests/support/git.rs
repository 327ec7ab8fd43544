//! Real git repositories for tests, made with the git CLI as a team's would be.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maur-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs git in `dir` with a throw-away identity and no user or system configuration.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository with `main` (three files) and a `develop` branch.
pub fn source_repo() -> PathBuf {
    let dir = temp("src");
    git(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("README.md"), "# api\n").unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("src/lib.rs"),
        "pub fn page(n: usize) -> usize { n + 1 }\n",
    )
    .unwrap();
    std::fs::write(dir.join("old.txt"), "remove me\n").unwrap();
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "initial"]);
    git(&dir, &["branch", "develop"]);
    dir
}
