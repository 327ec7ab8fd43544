//! The workspace against real git repositories: mirrors, checkouts, the one commit, the push,
//! and the guards.

mod support;

use std::path::{Path, PathBuf};

use maur::workspace::guards::{GuardRules, Violation};
use maur::workspace::{Author, PushMode, WorkspaceError, Workspaces, commit_all, push};
use support::git::{git, source_repo, temp};

fn rules() -> GuardRules {
    GuardRules {
        allow_workflow_changes: false,
        max_file_bytes: 1024 * 1024,
        own_secrets: vec!["the-api-token-0123456789".into()],
    }
}

fn author() -> Author {
    Author {
        name: "maur".into(),
        email: "maur@example.com".into(),
    }
}

#[test]
fn a_task_gets_its_branch_and_exactly_its_change_is_pushed() {
    let src = source_repo();
    let base_head = git(&src, &["rev-parse", "main"]);
    let data = temp("data");
    let ws = Workspaces::new(&data);
    let url = src.to_string_lossy().into_owned();

    let co = ws
        .prepare(&url, None, "task-1", None, "maur/task-1")
        .unwrap();
    assert_eq!(co.base_branch, "main", "the default branch");
    assert_eq!(co.base_commit.to_string(), base_head);
    assert_eq!(
        git(&co.path, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "maur/task-1"
    );
    assert_eq!(git(&co.path, &["remote", "get-url", "origin"]), url);
    assert!(data.join("mirrors/local").exists());

    // The agent edits, adds, deletes, and even commits on its own.
    std::fs::write(
        co.path.join("src/lib.rs"),
        "pub fn page(n: usize) -> usize { n }\n",
    )
    .unwrap();
    std::fs::write(co.path.join("src/test.rs"), "#[test] fn t() {}\n").unwrap();
    std::fs::remove_file(co.path.join("old.txt")).unwrap();
    git(&co.path, &["commit", "-q", "-am", "agent's own commit"]);

    let done = commit_all(
        &co,
        "maur: Fix pagination\n\nTask: task-1",
        &author(),
        &rules(),
    )
    .unwrap()
    .expect("a change");
    assert_eq!(done.files_changed, 3);
    assert_eq!(
        done.diffstat(),
        "3 files changed, 2 insertions(+), 2 deletions(-)"
    );
    push(&co, &url, None, PushMode::FastForward).unwrap();

    // What the team sees in their repository.
    let pushed = git(&src, &["rev-parse", "maur/task-1"]);
    assert_eq!(pushed, done.sha);
    assert_eq!(
        git(&src, &["rev-parse", "maur/task-1^"]),
        base_head,
        "one commit on the base"
    );
    assert_eq!(
        git(
            &src,
            &["log", "-1", "--format=%an <%ae>%n%s%n%b", "maur/task-1"]
        ),
        "maur <maur@example.com>\nmaur: Fix pagination\nTask: task-1"
    );
    let files = git(&src, &["diff", "--name-status", "main", "maur/task-1"]);
    assert_eq!(files, "D\told.txt\nM\tsrc/lib.rs\nA\tsrc/test.rs");
    assert_eq!(
        git(&src, &["rev-parse", "main"]),
        base_head,
        "main untouched"
    );

    ws.remove("task-1");
    assert!(!co.path.exists());
    assert!(ws.mirror_path(&url).exists(), "the mirror stays");
}

#[test]
fn no_change_means_no_commit() {
    let src = source_repo();
    let ws = Workspaces::new(&temp("data"));
    let co = ws
        .prepare(&src.to_string_lossy(), None, "t", Some("develop"), "maur/t")
        .unwrap();
    assert_eq!(co.base_branch, "develop");
    assert!(commit_all(&co, "m", &author(), &rules()).unwrap().is_none());
}

#[test]
fn a_missing_branch_is_a_clear_error() {
    let src = source_repo();
    let ws = Workspaces::new(&temp("data"));
    let err = ws
        .prepare(&src.to_string_lossy(), None, "t", Some("nope"), "maur/t")
        .unwrap_err();
    assert!(matches!(err, WorkspaceError::Fatal(_)));
    assert!(
        err.to_string().contains("branch \"nope\" does not exist"),
        "{err}"
    );
}

#[test]
fn the_mirror_follows_the_repository() {
    let src = source_repo();
    let ws = Workspaces::new(&temp("data"));
    let url = src.to_string_lossy().into_owned();
    ws.prepare(&url, None, "a", None, "maur/a").unwrap();
    std::fs::write(src.join("NEW.md"), "new\n").unwrap();
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "second"]);
    git(&src, &["branch", "-D", "develop"]);
    let co = ws.prepare(&url, None, "b", None, "maur/b").unwrap();
    assert!(co.path.join("NEW.md").exists(), "fetched before the task");
    let mirror = ws.mirror_path(&url);
    let branches = git(&mirror, &["branch", "--format=%(refname:short)"]);
    assert!(!branches.contains("develop"), "pruned: {branches}");
}

#[test]
fn two_tasks_on_one_repository_share_one_mirror() {
    let src = source_repo();
    let data = temp("data");
    let url = src.to_string_lossy().into_owned();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (data, url) = (data.clone(), url.clone());
            std::thread::spawn(move || {
                let ws = Workspaces::new(&data);
                let id = format!("t{i}");
                let co = ws
                    .prepare(&url, None, &id, None, &format!("maur/{id}"))
                    .unwrap();
                std::fs::write(co.path.join(format!("f{i}.txt")), "x\n").unwrap();
                commit_all(&co, &format!("maur: {id}"), &author(), &rules())
                    .unwrap()
                    .unwrap();
                push(&co, &url, None, PushMode::FastForward).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for i in 0..4 {
        assert_eq!(
            git(
                &src,
                &["show", "--name-only", "--format=", &format!("maur/t{i}")]
            ),
            format!("f{i}.txt")
        );
    }
    let mirrors: Vec<_> = walk(&data.join("mirrors"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "git"))
        .collect();
    assert_eq!(mirrors.len(), 1, "{mirrors:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.push(path.clone());
            if path.extension().is_none_or(|e| e != "git") {
                out.extend(walk(&path));
            }
        }
    }
    out
}

#[test]
fn guards_refuse_what_they_should() {
    let src = source_repo();
    let ws = Workspaces::new(&temp("data"));
    let url = src.to_string_lossy().into_owned();
    /// (path, content, the refusal expected)
    type Case = (&'static str, Vec<u8>, fn(&Violation) -> bool);
    let cases: Vec<Case> = vec![
        (".github/workflows/ci.yml", b"on: push\n".to_vec(), |v| {
            matches!(v, Violation::Workflow(_))
        }),
        ("big.bin", vec![b'x'; 2 * 1024 * 1024], |v| {
            matches!(v, Violation::TooLarge { .. })
        }),
        (
            "config.py",
            format!("KEY = '{}{}'\n", "-----BEGIN PRIVATE", " KEY-----").into_bytes(),
            |v| matches!(v, Violation::Credential { .. }),
        ),
        (
            "notes.md",
            b"token: the-api-token-0123456789\n".to_vec(),
            |v| matches!(v, Violation::Credential { .. }),
        ),
    ];
    for (i, (path, content, expected)) in cases.into_iter().enumerate() {
        let id = format!("g{i}");
        let co = ws
            .prepare(&url, None, &id, None, &format!("maur/{id}"))
            .unwrap();
        let file = co.path.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        match commit_all(&co, "m", &author(), &rules()) {
            Err(WorkspaceError::Refused(v)) => {
                assert!(expected(&v), "{path}: {v}");
                assert!(!v.to_string().contains("the-api-token-0123456789"), "{v}");
            }
            other => panic!("{path}: expected a refusal, got {other:?}"),
        }
    }
    let allowed = GuardRules {
        allow_workflow_changes: true,
        ..rules()
    };
    let co = ws.prepare(&url, None, "ok", None, "maur/ok").unwrap();
    std::fs::create_dir_all(co.path.join(".github/workflows")).unwrap();
    std::fs::write(co.path.join(".github/workflows/ci.yml"), "on: push\n").unwrap();
    assert!(commit_all(&co, "m", &author(), &allowed).unwrap().is_some());
}

#[test]
fn what_the_agent_writes_into_its_git_config_cannot_redirect_maur() {
    let src = source_repo();
    let elsewhere = temp("evil");
    git(&elsewhere, &["init", "-q", "--bare"]);
    let victim = temp("victim");
    std::fs::write(victim.join("secret.env"), "API_KEY=host-secret\n").unwrap();
    let ws = Workspaces::new(&temp("data"));
    let url = src.to_string_lossy().into_owned();
    let co = ws.prepare(&url, None, "t", None, "maur/t").unwrap();

    // The agent rewrites its repository's configuration, as a prompt injection might ask.
    let evil = elsewhere.to_string_lossy().into_owned();
    git(
        &co.path,
        &["config", &format!("url.{evil}.pushInsteadOf"), &url],
    );
    git(
        &co.path,
        &["config", &format!("url.{evil}.insteadOf"), &url],
    );
    git(
        &co.path,
        &["config", "core.worktree", victim.to_str().unwrap()],
    );
    std::fs::write(co.path.join("FIX.md"), "fixed\n").unwrap();

    let done = commit_all(&co, "m", &author(), &rules()).unwrap().unwrap();
    assert_eq!(
        done.paths,
        ["FIX.md"],
        "only the checkout's files are committed"
    );
    push(&co, &url, None, PushMode::FastForward).unwrap();
    assert_eq!(
        git(&src, &["show", "maur/t:FIX.md"]),
        "fixed",
        "pushed where maur meant"
    );
    let evil_refs = git(&elsewhere, &["for-each-ref"]);
    assert!(
        evil_refs.is_empty(),
        "nothing may land elsewhere: {evil_refs}"
    );
    assert!(victim.join("secret.env").exists());
    assert!(
        !victim.join("README.md").exists(),
        "maur wrote into the victim directory"
    );
}

#[test]
fn a_checkout_the_agent_locked_down_is_still_removed() {
    let src = source_repo();
    let ws = Workspaces::new(&temp("data"));
    let co = ws
        .prepare(&src.to_string_lossy(), None, "t", None, "maur/t")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(co.path.join("src"), std::fs::Permissions::from_mode(0o000)).unwrap();
    ws.remove("t");
    assert!(!co.path.exists());
}

#[test]
fn the_credential_scan_sees_binary_files_attributes_and_paths() {
    let src = source_repo();
    let ws = Workspaces::new(&temp("data"));
    let url = src.to_string_lossy().into_owned();
    let token = format!("{}{}", "ghp", "_16C7e42F292c6912E7710c838347Ae178B4aXYZ");
    /// (file, content, another file to write alongside)
    type Case<'a> = (&'a str, Vec<u8>, Option<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        // A NUL byte makes git call the file binary.
        (
            "blob.bin",
            [b"\0\0".as_slice(), token.as_bytes()].concat(),
            None,
        ),
        // .gitattributes marking everything binary.
        (
            "notes.txt",
            token.clone().into_bytes(),
            Some((".gitattributes", "* binary\n")),
        ),
    ];
    for (i, (path, content, extra)) in cases.into_iter().enumerate() {
        let id = format!("s{i}");
        let co = ws
            .prepare(&url, None, &id, None, &format!("maur/{id}"))
            .unwrap();
        std::fs::write(co.path.join(path), content).unwrap();
        if let Some((file, text)) = extra {
            std::fs::write(co.path.join(file), text).unwrap();
        }
        let result = commit_all(&co, "m", &author(), &rules());
        assert!(
            matches!(
                result,
                Err(WorkspaceError::Refused(Violation::Credential { .. }))
            ),
            "{path}: {result:?}"
        );
    }
    // A credential that was already in the repository is not the change's doing.
    std::fs::write(
        src.join("fixture.pem"),
        format!("{}{}\n", "-----BEGIN PRIVATE", " KEY-----"),
    )
    .unwrap();
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "test fixture"]);
    let co = ws.prepare(&url, None, "keep", None, "maur/keep").unwrap();
    let fixture = co.path.join("fixture.pem");
    let mut text = std::fs::read_to_string(&fixture).unwrap();
    text.push_str("comment added\n");
    std::fs::write(&fixture, text).unwrap();
    assert!(commit_all(&co, "m", &author(), &rules()).unwrap().is_some());
}

#[test]
fn a_retry_may_replace_its_own_branch_but_a_follow_up_only_moves_forward() {
    let src = source_repo();
    let ws = Workspaces::new(&temp("data"));
    let url = src.to_string_lossy().into_owned();
    // Attempt 1 pushed, then something after the push failed.
    let first = ws.prepare(&url, None, "t-1", None, "maur/t").unwrap();
    std::fs::write(first.path.join("A.md"), "first attempt\n").unwrap();
    commit_all(&first, "m", &author(), &rules())
        .unwrap()
        .unwrap();
    push(&first, &url, None, PushMode::ReplaceOwn).unwrap();

    // Attempt 2 starts again from the base and produces a different commit.
    let second = ws.prepare(&url, None, "t-2", None, "maur/t").unwrap();
    std::fs::write(second.path.join("A.md"), "second attempt\n").unwrap();
    let done = commit_all(&second, "m", &author(), &rules())
        .unwrap()
        .unwrap();
    let refused = push(&second, &url, None, PushMode::FastForward).unwrap_err();
    assert!(matches!(refused, WorkspaceError::Transient(_)), "{refused}");
    assert!(
        refused.to_string().contains("not a fast-forward"),
        "{refused}"
    );
    push(&second, &url, None, PushMode::ReplaceOwn).unwrap();
    assert_eq!(git(&src, &["rev-parse", "maur/t"]), done.sha);
}

#[test]
fn a_credential_in_the_commit_message_is_refused() {
    let src = source_repo();
    let ws = Workspaces::new(&temp("data"));
    let co = ws
        .prepare(&src.to_string_lossy(), None, "m", None, "maur/m")
        .unwrap();
    std::fs::write(co.path.join("FIX.md"), "fixed\n").unwrap();
    let message = "maur: fix\n\nI used the-api-token-0123456789 to test it\n";
    let result = commit_all(&co, message, &author(), &rules());
    assert!(
        matches!(
            result,
            Err(WorkspaceError::Refused(Violation::Credential { .. }))
        ),
        "{result:?}"
    );
}

fn spares(ws: &Workspaces, url: &str) -> usize {
    std::fs::read_dir(ws.mirror_path(url).with_extension("spares"))
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

/// Every path in a checkout, relative, without `.git`.
fn tree(root: &Path) -> Vec<String> {
    let mut all: Vec<String> = walk(root)
        .into_iter()
        .filter_map(|p| {
            p.strip_prefix(root)
                .ok()
                .map(|r| r.to_string_lossy().into_owned())
        })
        .filter(|p| !p.starts_with(".git/") && p != ".git")
        .collect();
    all.sort();
    all
}

#[test]
fn a_finished_checkout_is_reset_and_reused_without_rewriting_unchanged_files() {
    let src = source_repo();
    std::fs::write(src.join(".gitignore"), "target/\n").unwrap();
    git(&src, &["add", ".gitignore"]);
    git(&src, &["commit", "-q", "-m", "ignore target"]);
    let data = temp("data");
    let ws = Workspaces::new(&data);
    let url = src.to_string_lossy().into_owned();

    let first = ws.prepare(&url, None, "t1", None, "maur/t1").unwrap();
    let fresh = tree(&first.path);
    let readme = inode(&first.path.join("README.md"));
    // What an agent leaves behind: an edit, a new file, build output, a deleted file, a
    // hook in its own .git.
    std::fs::write(
        first.path.join("src/lib.rs"),
        "pub fn page(n: usize) -> usize { n }\n",
    )
    .unwrap();
    std::fs::write(first.path.join("NOTES.md"), "scratch\n").unwrap();
    std::fs::create_dir_all(first.path.join("target/debug")).unwrap();
    std::fs::write(first.path.join("target/debug/app"), "binary").unwrap();
    std::fs::remove_file(first.path.join("old.txt")).unwrap();
    std::fs::write(
        first.path.join(".git/hooks/pre-commit"),
        "#!/bin/sh\necho planted\n",
    )
    .unwrap();
    commit_all(&first, "maur: t1", &author(), &rules())
        .unwrap()
        .unwrap();
    ws.recycle(&first, "t1");
    assert!(!first.path.exists());
    assert_eq!(spares(&ws, &url), 1);

    let second = ws.prepare(&url, None, "t2", None, "maur/t2").unwrap();
    assert_eq!(spares(&ws, &url), 0, "the spare was taken");
    assert_eq!(
        inode(&second.path.join("README.md")),
        readme,
        "an unchanged file was not rewritten"
    );
    assert_eq!(tree(&second.path), fresh, "exactly the base's files");
    assert_eq!(
        std::fs::read_to_string(second.path.join("src/lib.rs")).unwrap(),
        "pub fn page(n: usize) -> usize { n + 1 }\n"
    );
    assert!(
        !second.path.join(".git/hooks/pre-commit").exists(),
        "a fresh .git for the agent"
    );
    assert_eq!(
        git(&second.path, &["status", "--porcelain", "--ignored"]),
        ""
    );
    assert_eq!(
        git(&second.path, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "maur/t2"
    );
    // maur's own view agrees: nothing to commit.
    assert!(
        commit_all(&second, "maur: t2", &author(), &rules())
            .unwrap()
            .is_none()
    );

    // The base moved on meanwhile: the reused tree follows it.
    ws.recycle(&second, "t2");
    std::fs::write(src.join("NEW.md"), "new\n").unwrap();
    git(&src, &["add", "NEW.md"]);
    git(&src, &["commit", "-q", "-m", "new"]);
    let third = ws.prepare(&url, None, "t3", None, "maur/t3").unwrap();
    assert_eq!(
        std::fs::read_to_string(third.path.join("NEW.md")).unwrap(),
        "new\n"
    );
    assert_eq!(
        git(&third.path, &["status", "--porcelain", "--ignored"]),
        ""
    );
    ws.remove("t3");
}

#[test]
fn a_checkout_with_a_foreign_symlink_is_never_reused() {
    let src = source_repo();
    let data = temp("data");
    let outside = temp("outside");
    let ws = Workspaces::new(&data);
    let url = src.to_string_lossy().into_owned();
    let co = ws.prepare(&url, None, "t1", None, "maur/t1").unwrap();
    // A tracked directory replaced by a link to somewhere else: resetting would write there.
    std::fs::remove_dir_all(co.path.join("src")).unwrap();
    std::os::unix::fs::symlink(&outside, co.path.join("src")).unwrap();
    ws.recycle(&co, "t1");
    assert_eq!(spares(&ws, &url), 0);
    assert!(!co.path.exists(), "removed instead");
    assert!(
        outside.exists() && std::fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing written through the link"
    );
}

#[test]
fn a_checkout_with_a_nested_git_directory_is_never_reused() {
    let src = source_repo();
    let data = temp("data");
    let ws = Workspaces::new(&data);
    let url = src.to_string_lossy().into_owned();
    let co = ws.prepare(&url, None, "t1", None, "maur/t1").unwrap();
    // git leaves an untracked directory holding a .git alone: it would survive a reset
    // and configure the next task's build.
    std::fs::create_dir_all(co.path.join(".cargo")).unwrap();
    std::fs::write(co.path.join(".cargo/.git"), "gitdir: /nowhere\n").unwrap();
    std::fs::write(
        co.path.join(".cargo/config.toml"),
        "[build]\nrustc-wrapper = \"./x\"\n",
    )
    .unwrap();
    ws.recycle(&co, "t1");
    assert_eq!(spares(&ws, &url), 0);
    assert!(!co.path.exists());
    let next = ws.prepare(&url, None, "t2", None, "maur/t2").unwrap();
    assert!(!next.path.join(".cargo").exists());
}

#[test]
fn a_git_symlink_and_a_locked_checkout_do_not_loosen_anything_outside() {
    use std::os::unix::fs::PermissionsExt;
    let src = source_repo();
    let data = temp("data");
    let outside = temp("outside");
    std::fs::create_dir_all(outside.join("private")).unwrap();
    std::fs::set_permissions(
        outside.join("private"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let ws = Workspaces::new(&data);
    let url = src.to_string_lossy().into_owned();
    let co = ws.prepare(&url, None, "t1", None, "maur/t1").unwrap();
    std::fs::remove_dir_all(co.path.join(".git")).unwrap();
    std::os::unix::fs::symlink(&outside, co.path.join(".git")).unwrap();
    std::fs::set_permissions(&co.path, std::fs::Permissions::from_mode(0o555)).unwrap();
    ws.recycle(&co, "t1");
    assert_eq!(spares(&ws, &url), 0);
    assert!(!co.path.exists(), "removed");
    let mode = std::fs::metadata(outside.join("private"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "nothing outside was chmodded");
    assert!(
        outside.join("private").exists(),
        "nothing outside was deleted"
    );
}
