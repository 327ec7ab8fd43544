//! Finished checkouts kept for the next task of the same repository.
//!
//! Writing a fresh working tree costs one file creation per file, which dominates task
//! start-up for large repositories. Instead, a task's checkout is reset to its base when
//! the task ends (`git reset --hard && git clean -ffdx`, with the agent's `.git` deleted)
//! and parked beside the mirror with its index. The next task claims it with one atomic
//! rename and checks out its own base from there, writing only the files that differ.
//!
//! Trust: the tree was in an untrusted agent's hands. Parking refuses a tree holding a
//! symlink where the base has none (a reset must never write through a link to somewhere
//! else), and the reset removes everything the base does not track, ignored files too.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use git2::build::CheckoutBuilder;
use git2::{Oid, Repository};

use super::{Checkout, WorkspaceError, open_own, remove_tree};

/// Finished checkouts kept per repository.
pub const MAX_SPARES: usize = 4;
/// Half-parked or half-claimed trees older than this belonged to a process that died.
const STALE: Duration = Duration::from_secs(3600);

/// A claimed spare: its tree is already at the new checkout's path.
pub struct Spare {
    /// Where the claim holds the index and base (removed by `Drop`).
    dir: PathBuf,
    pub index: PathBuf,
    pub base: Oid,
}

impl Drop for Spare {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
    }
}

/// `<mirror>.spares/`
pub fn spares_dir(mirror: &Path) -> PathBuf {
    mirror.with_extension("spares")
}

fn parked(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Resets a finished checkout to its base and keeps it for the next task; `Ok(false)` when
/// it was not kept (enough spares already, or a tree that must not be reused), and the
/// caller removes it.
pub fn park(checkout: &Checkout) -> Result<bool, WorkspaceError> {
    let Some(mirror) = checkout.objects.parent() else {
        return Ok(false);
    };
    let dir = spares_dir(mirror);
    if parked(&dir).len() >= MAX_SPARES {
        return Ok(false);
    }
    // The agent's `.git` must be a plain directory (a symlink could lead anywhere).
    let agent_git = checkout.path.join(".git");
    match std::fs::symlink_metadata(&agent_git) {
        Ok(meta) if meta.is_dir() => {
            remove_tree(&agent_git)
                .map_err(|e| WorkspaceError::io("removing the agent's .git", e))?;
        }
        Ok(_) => return Ok(false),
        Err(_) => {}
    }
    let repo = open_own(checkout)?;
    let base = repo
        .find_commit(checkout.base_commit)
        .and_then(|c| c.tree())
        .map_err(|e| WorkspaceError::git("reading the base tree", e))?;
    if let Some(odd) = unsafe_entry(&checkout.path, &base) {
        tracing::info!(path = %odd.display(), "not reusing a checkout: it holds a nested .git or a symlink the base does not have");
        return Ok(false);
    }
    // HEAD is what maur last committed (or the base), and the index matches the files
    // except where the agent changed them since: a forced checkout with removal of
    // untracked and ignored files leaves exactly the base.
    repo.checkout_tree(
        base.as_object(),
        Some(
            CheckoutBuilder::new()
                .force()
                .remove_untracked(true)
                .remove_ignored(true),
        ),
    )
    .map_err(|e| WorkspaceError::git("resetting the checkout", e))?;
    // Whatever the reset could not undo (git leaves some untracked directories alone)
    // must not reach the next task: only a tree identical to its base is kept. HEAD moves
    // to the base so the status compares against it (this git dir is deleted next).
    repo.set_head_detached(checkout.base_commit)
        .map_err(|e| WorkspaceError::git("checking the reset checkout", e))?;
    let mut options = git2::StatusOptions::new();
    options
        .include_untracked(true)
        .include_ignored(true)
        .recurse_untracked_dirs(true)
        .recurse_ignored_dirs(true)
        .exclude_submodules(false);
    let clean = repo
        .statuses(Some(&mut options))
        .map_err(|e| WorkspaceError::git("checking the reset checkout", e))?
        .is_empty();
    if !clean {
        tracing::info!(path = %checkout.path.display(), "not reusing a checkout the reset did not make clean");
        return Ok(false);
    }

    std::fs::create_dir_all(&dir)
        .map_err(|e| WorkspaceError::io("creating the spares directory", e))?;
    let incoming = dir.join(format!(
        ".incoming-{}-{}",
        now(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir(&incoming).map_err(|e| WorkspaceError::io("parking a checkout", e))?;
    let result = (|| {
        std::fs::write(incoming.join("base"), checkout.base_commit.to_string())?;
        std::fs::copy(checkout.git_dir.join("index"), incoming.join("index"))?;
        std::fs::rename(&checkout.path, incoming.join("tree"))?;
        std::fs::rename(
            &incoming,
            dir.join(uuid::Uuid::new_v4().simple().to_string()),
        )
    })();
    if let Err(e) = result {
        let _ = remove_tree(&incoming);
        return Err(WorkspaceError::io("parking a checkout", e));
    }
    Ok(true)
}

/// The first path under `root` that makes the tree unsafe to reset and reuse: a symlink
/// where `base` has none (a reset could write through it), or a nested `.git` (git leaves a
/// directory holding one alone, so it would outlive the reset).
fn unsafe_entry(root: &Path, base: &git2::Tree<'_>) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if entry
                .file_name()
                .to_string_lossy()
                .eq_ignore_ascii_case(".git")
            {
                return Some(path);
            }
            if kind.is_symlink() {
                let tracked = path
                    .strip_prefix(root)
                    .ok()
                    .and_then(|rel| base.get_path(rel).ok())
                    .is_some_and(|e| e.filemode() == 0o120000);
                if !tracked {
                    return Some(path);
                }
            } else if kind.is_dir() {
                stack.push(path);
            }
        }
    }
    None
}

/// Takes a parked checkout of `mirror` (if any) and moves its tree to `dest`.
pub fn claim(mirror: &Path, dest: &Path) -> Option<Spare> {
    let dir = spares_dir(mirror);
    sweep(&dir);
    for candidate in parked(&dir) {
        let taken = dir.join(format!(
            ".taken-{}-{}",
            now(),
            uuid::Uuid::new_v4().simple()
        ));
        // Atomic: of several workers renaming the same spare, one wins.
        if std::fs::rename(&candidate, &taken).is_err() {
            continue;
        }
        let spare = Spare {
            index: taken.join("index"),
            base: match std::fs::read_to_string(taken.join("base"))
                .ok()
                .and_then(|s| Oid::from_str(s.trim()).ok())
            {
                Some(oid) => oid,
                None => {
                    let _ = remove_tree(&taken);
                    continue;
                }
            },
            dir: taken,
        };
        if std::fs::rename(spare.dir.join("tree"), dest).is_ok() {
            return Some(spare);
        }
    }
    None
}

/// Checks out `base` over a claimed spare's tree at the repository's workdir, writing only
/// what differs from the spare's own base.
pub fn reuse(
    repo: &Repository,
    spare: &Spare,
    base: Oid,
    branch: &str,
) -> Result<(), WorkspaceError> {
    std::fs::copy(&spare.index, repo.path().join("index"))
        .map_err(|e| WorkspaceError::io("reading the spare's index", e))?;
    repo.set_head_detached(spare.base)
        .map_err(|e| WorkspaceError::git("reading the spare's base", e))?;
    let target = repo
        .find_commit(base)
        .and_then(|c| c.tree())
        .map_err(|e| WorkspaceError::git("reading the base tree", e))?;
    repo.checkout_tree(
        target.as_object(),
        Some(
            CheckoutBuilder::new()
                .force()
                .remove_untracked(true)
                .remove_ignored(true),
        ),
    )
    .map_err(|e| WorkspaceError::git("checking out the base over a spare", e))?;
    repo.set_head(&format!("refs/heads/{branch}"))
        .map_err(|e| WorkspaceError::git("switching to the task branch", e))?;
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Removes what a process that died mid-park or mid-claim left behind. The time is in the
/// name (`.taken-<secs>-<id>`): a rename does not change a directory's own mtime, so an old
/// spare claimed a moment ago must not look stale.
fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix(".incoming-")
            .or_else(|| name.strip_prefix(".taken-"))
        else {
            continue;
        };
        let started = rest.split('-').next().and_then(|t| t.parse::<u64>().ok());
        if started.is_some_and(|t| now().saturating_sub(t) > STALE.as_secs()) {
            let _ = remove_tree(&entry.path());
        }
    }
}
