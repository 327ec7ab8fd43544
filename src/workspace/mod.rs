//! Repositories on disk: one bare mirror per repository, fetched before each task under a
//! lock, and one throw-away checkout per task made from it without touching the network.
//!
//! Credentials reach git only through libgit2's credentials callback, at the moment of use:
//! never in a remote URL, `.git/config`, a log line or an error. Pushes go to the clean URL
//! the forge gives, not to whatever the checkout's config says (the agent could edit it).

pub mod guards;
mod spare;

use std::fs::File;
use std::path::{Path, PathBuf};

use git2::{
    AutotagOption, Cred, CredentialType, Direction, FetchOptions, FetchPrune, IndexAddOption,
    PushOptions, RemoteCallbacks, Repository, RepositoryInitOptions, Signature,
    build::CheckoutBuilder,
};
use secrecy::ExposeSecret;

use crate::forge::GitCredentials;
use guards::{GuardRules, Violation};

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// Network or a race with another push: worth retrying.
    #[error("{0}")]
    Transient(String),
    /// The repository or branch is not there, or the change was refused.
    #[error("{0}")]
    Fatal(String),
    /// The remote refused the credentials (401): fresh ones may work.
    #[error("{0}")]
    AuthRefused(String),
    #[error(transparent)]
    Refused(#[from] Violation),
}

impl WorkspaceError {
    fn git(context: &str, e: git2::Error) -> Self {
        let message = format!("{context}: {}", e.message());
        // Refused credentials: fresh ones may help, once. No access, no such repository:
        // retrying will not.
        let status = |code: &str| e.message().contains(&format!("status code: {code}"));
        let unauthorized = e.code() == git2::ErrorCode::Auth || status("401");
        let refused = status("403") || status("404");
        match e.class() {
            _ if unauthorized => Self::AuthRefused(message),
            _ if refused => Self::Fatal(message),
            git2::ErrorClass::Net
            | git2::ErrorClass::Http
            | git2::ErrorClass::Ssl
            | git2::ErrorClass::Os => Self::Transient(message),
            _ => Self::Fatal(message),
        }
    }

    fn io(context: &str, e: std::io::Error) -> Self {
        Self::Transient(format!("{context}: {e}"))
    }
}

/// A task's checkout, on its own branch.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The files the agent works on (its own `.git` inside is never read by maur).
    pub path: PathBuf,
    /// maur's git directory for the task, outside the checkout and the sandbox.
    pub git_dir: PathBuf,
    pub branch: String,
    pub base_branch: String,
    pub base_commit: git2::Oid,
    /// The mirror's object store the checkout borrows from (read-only for the agent).
    pub objects: PathBuf,
}

/// The commit `publish` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub sha: String,
    pub files_changed: usize,
    pub insertions: usize,
    pub deletions: usize,
    pub paths: Vec<String>,
}

impl Committed {
    pub fn diffstat(&self) -> String {
        format!(
            "{} file{} changed, {} insertion{}(+), {} deletion{}(-)",
            self.files_changed,
            plural(self.files_changed),
            self.insertions,
            plural(self.insertions),
            self.deletions,
            plural(self.deletions)
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub struct Author {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone)]
pub struct Workspaces {
    root: PathBuf,
}

/// Network limits for every git operation: a stalled server must not hold a mirror's lock
/// (and every task for that repository) forever.
fn set_network_timeouts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: called once, before any git operation of this process starts.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(30_000);
            let _ = git2::opts::set_server_timeout_in_milliseconds(300_000);
        }
    });
}

impl Workspaces {
    pub fn new(data_dir: &Path) -> Self {
        set_network_timeouts();
        Self {
            root: data_dir.to_path_buf(),
        }
    }

    /// `mirrors/<host>/<path>.git` for URLs, `mirrors/local/<path>.git` for paths.
    pub fn mirror_path(&self, clone_url: &str) -> PathBuf {
        let (host, path) = match clone_url.split_once("://") {
            Some((_, rest)) => rest.split_once('/').unwrap_or((rest, "")),
            None => ("local", clone_url),
        };
        let mut out = self.root.join("mirrors").join(sanitize(host));
        for part in path
            .split('/')
            .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        {
            out.push(sanitize(part));
        }
        out.set_extension("git");
        out
    }

    pub fn checkout_path(&self, task_id: &str) -> PathBuf {
        self.root.join("work").join(sanitize(task_id))
    }

    /// Fetches the mirror (creating it on first use) and makes the task's checkout on a new
    /// branch from `base` (or the repository's default branch).
    pub fn prepare(
        &self,
        clone_url: &str,
        creds: Option<&GitCredentials>,
        task_id: &str,
        base: Option<&str>,
        branch: &str,
    ) -> Result<Checkout, WorkspaceError> {
        let mirror = self.mirror_path(clone_url);
        let dir = mirror.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)
            .map_err(|e| WorkspaceError::io("creating the mirror directory", e))?;
        // One writer per mirror, across threads and processes sharing MAUR_DATA_DIR.
        let lock = File::create(mirror.with_extension("lock"))
            .map_err(|e| WorkspaceError::io("creating the mirror lock", e))?;
        lock.lock()
            .map_err(|e| WorkspaceError::io("locking the mirror", e))?;

        let repo = open_or_init_mirror(&mirror, clone_url)?;
        let default = sync_mirror(&repo, clone_url, creds)?;
        let base = match base {
            Some(b) => b.to_owned(),
            None => default.ok_or_else(|| {
                WorkspaceError::Fatal(format!("{clone_url} has no default branch (is it empty?)"))
            })?,
        };
        if repo.find_reference(&format!("refs/heads/{base}")).is_err() {
            return Err(WorkspaceError::Fatal(format!(
                "branch {base:?} does not exist in {clone_url}"
            )));
        }

        let base_commit = repo
            .refname_to_id(&format!("refs/heads/{base}"))
            .map_err(|e| WorkspaceError::git("reading the base branch", e))?;
        drop(lock);

        let path = self.checkout_path(task_id);
        let git_dir = self.git_dir(task_id);
        for old in [&path, &git_dir] {
            if old.exists() {
                // A retry of the same task: start clean.
                remove_tree(old).map_err(|e| WorkspaceError::io("removing an old checkout", e))?;
            }
        }
        // Like `git clone --shared`: the checkout borrows the mirror's objects through
        // alternates, so preparing it writes only the working tree, whatever the history.
        // Fetches never delete objects from the mirror, so what it borrows stays.
        let objects = std::path::absolute(mirror.join("objects"))
            .map_err(|e| WorkspaceError::io("resolving the mirror path", e))?;

        // maur's own repository for this task lives outside the checkout, where the agent
        // cannot reach it: its config, hooks and index are maur's, so nothing the agent
        // writes (a pushInsteadOf, a core.worktree) can redirect a commit or a push.
        let own = borrowing_repo(
            &git_dir,
            true,
            &objects,
            clone_url,
            &base,
            base_commit,
            branch,
        )?;
        // A finished checkout of this repository, if one is parked, needs only the files
        // that differ written; otherwise the whole tree is written.
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| WorkspaceError::io("creating the checkout", e))?;
        }
        let spare = spare::claim(&mirror, &path);
        if spare.is_none() {
            std::fs::create_dir_all(&path)
                .map_err(|e| WorkspaceError::io("creating the checkout", e))?;
        }
        own.set_workdir(&path, false)
            .map_err(|e| WorkspaceError::git("attaching the checkout", e))?;
        let reused = match &spare {
            Some(spare) => match spare::reuse(&own, spare, base_commit, branch) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "could not reuse a parked checkout; writing a fresh one");
                    remove_tree(&path)
                        .map_err(|e| WorkspaceError::io("removing a spare checkout", e))?;
                    std::fs::create_dir_all(&path)
                        .map_err(|e| WorkspaceError::io("creating the checkout", e))?;
                    false
                }
            },
            None => false,
        };
        drop(spare);
        if !reused {
            own.checkout_head(Some(CheckoutBuilder::new().force()))
                .map_err(|e| WorkspaceError::git("checking out the base", e))?;
        }
        // The agent gets a repository of its own in the checkout, for `git diff` and the like;
        // maur never reads it.
        borrowing_repo(
            &path.join(".git"),
            false,
            &objects,
            clone_url,
            &base,
            base_commit,
            branch,
        )?;
        std::fs::copy(git_dir.join("index"), path.join(".git/index"))
            .map_err(|e| WorkspaceError::io("writing the checkout's index", e))?;
        Ok(Checkout {
            path,
            git_dir,
            branch: branch.to_owned(),
            base_branch: base,
            base_commit,
            objects,
        })
    }

    /// Where maur keeps its own git directory for a task, outside the checkout.
    fn git_dir(&self, task_id: &str) -> PathBuf {
        self.root
            .join("gitdirs")
            .join(format!("{}.git", sanitize(task_id)))
    }

    /// Resets a finished task's checkout to its base and keeps it for the next task of the
    /// same repository (see `spare`); removes it when it cannot be kept. Only for a checkout
    /// no process is writing to any more.
    pub fn recycle(&self, checkout: &Checkout, task_id: &str) {
        match spare::park(checkout) {
            Ok(true) => {}
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not keep a checkout for reuse"),
        }
        self.remove(task_id);
    }

    /// Removes a task's checkout and git directory; the mirror stays.
    pub fn remove(&self, task_id: &str) {
        for path in [self.checkout_path(task_id), self.git_dir(task_id)] {
            if let Err(e) = remove_tree(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a checkout");
            }
        }
    }
}

/// `remove_dir_all` that first restores write permission the agent may have taken away.
/// Symlinks are removed, never followed: the agent may point one anywhere on the host.
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fn unlock(dir: &Path) {
        // `symlink_metadata`: a link to a directory is not a directory here.
        if !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
            return;
        }
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    unlock(&entry.path());
                }
            }
        }
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return std::fs::remove_dir_all(path);
    };
    if !meta.is_dir() {
        // A file or a symlink: unlink it (its directory may need unlocking first).
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                if let Some(parent) = path.parent() {
                    unlock(parent);
                }
                std::fs::remove_file(path)
            }
            other => other,
        };
    }
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            unlock(path);
            std::fs::remove_dir_all(path)
        }
        other => other,
    }
}

/// A repository at `git_dir` that borrows `objects`, with `origin`, the base and the task
/// branch checked out in HEAD (files are written separately).
fn borrowing_repo(
    git_dir: &Path,
    bare: bool,
    objects: &Path,
    clone_url: &str,
    base: &str,
    base_commit: git2::Oid,
    branch: &str,
) -> Result<Repository, WorkspaceError> {
    let repo = if bare {
        Repository::init_opts(
            git_dir,
            RepositoryInitOptions::new().bare(true).mkpath(true),
        )
    } else {
        Repository::init(git_dir.parent().unwrap_or(git_dir))
    }
    .map_err(|e| WorkspaceError::git("creating the checkout", e))?;
    std::fs::write(
        repo.path().join("objects/info/alternates"),
        format!("{}\n", objects.display()),
    )
    .map_err(|e| WorkspaceError::io("linking the checkout to the mirror", e))?;
    repo.remote("origin", clone_url)
        .map_err(|e| WorkspaceError::git("setting origin", e))?;
    repo.reference(
        &format!("refs/remotes/origin/{base}"),
        base_commit,
        true,
        "maur: base",
    )
    .map_err(|e| WorkspaceError::git("recording the base branch", e))?;
    {
        let head = repo
            .find_commit(base_commit)
            .map_err(|e| WorkspaceError::git("reading the base commit", e))?;
        repo.branch(branch, &head, true)
            .map_err(|e| WorkspaceError::git("creating the task branch", e))?;
    }
    repo.set_head(&format!("refs/heads/{branch}"))
        .map_err(|e| WorkspaceError::git("switching to the task branch", e))?;
    Ok(repo)
}

/// maur's own repository for a checkout, attached to the checkout's files.
fn open_own(checkout: &Checkout) -> Result<Repository, WorkspaceError> {
    let repo = Repository::open_bare(&checkout.git_dir)
        .map_err(|e| WorkspaceError::git("opening the task's repository", e))?;
    repo.set_workdir(&checkout.path, false)
        .map_err(|e| WorkspaceError::git("attaching the checkout", e))?;
    Ok(repo)
}

fn open_or_init_mirror(path: &Path, url: &str) -> Result<Repository, WorkspaceError> {
    let repo = match Repository::open_bare(path) {
        Ok(repo) => repo,
        Err(_) => Repository::init_opts(path, RepositoryInitOptions::new().bare(true).mkpath(true))
            .map_err(|e| WorkspaceError::git("creating the mirror", e))?,
    };
    match repo.find_remote("origin") {
        Ok(remote) if remote.url() == Some(url) => {}
        Ok(_) => repo
            .remote_set_url("origin", url)
            .map_err(|e| WorkspaceError::git("updating the mirror's origin", e))?,
        Err(_) => {
            repo.remote_with_fetch("origin", url, "+refs/heads/*:refs/heads/*")
                .map_err(|e| WorkspaceError::git("adding the mirror's origin", e))?;
        }
    }
    Ok(repo)
}

/// Fetches every branch (pruning deleted ones) and returns the remote's default branch.
fn sync_mirror(
    repo: &Repository,
    url: &str,
    creds: Option<&GitCredentials>,
) -> Result<Option<String>, WorkspaceError> {
    let mut remote = repo
        .find_remote("origin")
        .map_err(|e| WorkspaceError::git("reading the mirror's origin", e))?;
    let (default, advertised) = {
        let conn = remote
            .connect_auth(Direction::Fetch, Some(callbacks(creds, url)), None)
            .map_err(|e| WorkspaceError::git("connecting to the repository", e))?;
        let default = conn.default_branch().ok().and_then(|b| {
            b.as_str()
                .map(|s| s.trim_start_matches("refs/heads/").to_owned())
        });
        let heads: Vec<(String, git2::Oid)> = conn
            .list()
            .map_err(|e| WorkspaceError::git("listing the repository's branches", e))?
            .iter()
            .filter(|h| h.name().starts_with("refs/heads/"))
            .map(|h| (h.name().to_owned(), h.oid()))
            .collect();
        (default, heads)
    };
    // A warm mirror is usually up to date: then skip the fetch, whose negotiation costs
    // seconds on a long history even when there is nothing to get.
    if !mirror_matches(repo, &advertised) {
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(callbacks(creds, url))
            .prune(FetchPrune::On)
            .download_tags(AutotagOption::None);
        remote
            .fetch(&["+refs/heads/*:refs/heads/*"], Some(&mut options), None)
            .map_err(|e| WorkspaceError::git("fetching the repository", e))?;
    }
    if let Some(branch) = &default {
        repo.set_head(&format!("refs/heads/{branch}"))
            .map_err(|e| WorkspaceError::git("recording the default branch", e))?;
    }
    Ok(default)
}

/// Whether the mirror's branches are exactly the advertised ones.
fn mirror_matches(repo: &Repository, advertised: &[(String, git2::Oid)]) -> bool {
    let Ok(refs) = repo.references_glob("refs/heads/*") else {
        return false;
    };
    let mut local: Vec<(String, git2::Oid)> = refs
        .flatten()
        .filter_map(|r| Some((r.name()?.to_owned(), r.target()?)))
        .collect();
    let mut remote = advertised.to_vec();
    local.sort();
    remote.sort();
    !remote.is_empty() && local == remote
}

/// `scheme://host[:port]` of a URL, to compare where credentials would go.
fn origin(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str()?,
        u.port_or_known_default()?
    ))
}

/// Git auth callbacks that answer once with `creds`, and only to the forge `expected` names;
/// a second ask means they were refused.
fn callbacks<'a>(creds: Option<&'a GitCredentials>, expected: &'a str) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let mut asked = false;
    callbacks.credentials(move |url, _user, allowed| {
        let Some(creds) = creds else {
            return Err(git2::Error::from_str(
                "the repository asked for credentials and the forge has none",
            ));
        };
        if origin(url).is_none() || origin(url) != origin(expected) {
            return Err(git2::Error::from_str(
                "refusing to send the forge's credentials to another host",
            ));
        }
        if asked || !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            // Asked again: the server refused them. Auth, so the caller may mint fresh ones.
            return Err(git2::Error::new(
                git2::ErrorCode::Auth,
                git2::ErrorClass::Callback,
                "the forge's credentials were refused",
            ));
        }
        asked = true;
        Cred::userpass_plaintext(&creds.username, creds.password.expose_secret())
    });
    callbacks
}

/// Stages everything in the checkout (new, changed and deleted files; ignored files stay
/// out, as with `git add -A`), checks the change against `rules`, and makes one commit on
/// the task branch whose parent is the base, whatever commits the agent made meanwhile.
/// `None` when nothing changed.
pub fn commit_all(
    checkout: &Checkout,
    message: &str,
    author: &Author,
    rules: &GuardRules,
) -> Result<Option<Committed>, WorkspaceError> {
    let repo = open_own(checkout)?;
    let mut index = repo
        .index()
        .map_err(|e| WorkspaceError::git("reading the index", e))?;
    index
        .add_all(["*"], IndexAddOption::DEFAULT, None)
        .and_then(|()| index.update_all(["*"], None))
        .and_then(|()| index.write())
        .map_err(|e| WorkspaceError::git("staging the change", e))?;
    let tree_id = index
        .write_tree()
        .map_err(|e| WorkspaceError::git("writing the tree", e))?;
    let base = repo
        .find_commit(checkout.base_commit)
        .map_err(|e| WorkspaceError::git("reading the base commit", e))?;
    if tree_id == base.tree_id() {
        return Ok(None);
    }
    let tree = repo
        .find_tree(tree_id)
        .map_err(|e| WorkspaceError::git("reading the tree", e))?;
    let base_tree = base
        .tree()
        .map_err(|e| WorkspaceError::git("reading the base tree", e))?;
    let diff = repo
        .diff_tree_to_tree(Some(&base_tree), Some(&tree), None)
        .map_err(|e| WorkspaceError::git("diffing the change", e))?;
    let paths = check_diff(&repo, &diff, rules)?;
    // The message carries the agent's summary, which also becomes the pull request's body.
    for line in message.lines() {
        guards::check_line("the commit message", line.as_bytes(), rules)?;
    }
    let stats = diff
        .stats()
        .map_err(|e| WorkspaceError::git("counting the change", e))?;

    let sig = Signature::now(&author.name, &author.email).map_err(|e| {
        WorkspaceError::Fatal(format!("MAUR_GIT_AUTHOR_NAME/_EMAIL: {}", e.message()))
    })?;
    let oid = repo
        .commit(None, &sig, &sig, message, &tree, &[&base])
        .map_err(|e| WorkspaceError::git("committing", e))?;
    repo.reference(
        &format!("refs/heads/{}", checkout.branch),
        oid,
        true,
        "maur: commit",
    )
    .and_then(|_| repo.set_head(&format!("refs/heads/{}", checkout.branch)))
    .map_err(|e| WorkspaceError::git("moving the task branch", e))?;
    // Leave the working tree matching the commit, whatever the agent checked out meanwhile.
    repo.checkout_head(Some(CheckoutBuilder::new().force()))
        .map_err(|e| WorkspaceError::git("checking out the commit", e))?;
    Ok(Some(Committed {
        sha: oid.to_string(),
        files_changed: stats.files_changed(),
        insertions: stats.insertions(),
        deletions: stats.deletions(),
        paths,
    }))
}

/// Applies the guards to every changed file and every added line; returns the changed paths.
fn check_diff(
    repo: &Repository,
    diff: &git2::Diff<'_>,
    rules: &GuardRules,
) -> Result<Vec<String>, WorkspaceError> {
    let mut paths = Vec::new();
    for delta in diff.deltas() {
        let old = delta.old_file();
        let new = delta.new_file();
        let deleted = delta.status() == git2::Delta::Deleted;
        let file = if deleted { &old } else { &new };
        let path = file
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        guards::check_path(&path, rules)?;
        // A renamed-away workflow counts as touching workflows too.
        if let Some(from) = old.path() {
            guards::check_path(&from.to_string_lossy(), rules)?;
        }
        guards::check_line(&path, path.as_bytes(), rules)?;
        if !deleted {
            let blob = repo
                .find_blob(new.id())
                .map_err(|e| WorkspaceError::git("reading a changed file", e))?;
            guards::check_size(&path, blob.size() as u64, rules)?;
            // Scan the bytes themselves, binary or not and whatever .gitattributes says,
            // but only lines the change added: a key already in the repository is not new.
            let old_blob = (!old.id().is_zero())
                .then(|| repo.find_blob(old.id()).ok())
                .flatten();
            let before: std::collections::HashSet<&[u8]> = old_blob
                .as_ref()
                .map(|b| b.content().split(|&c| c == b'\n').collect())
                .unwrap_or_default();
            for line in blob.content().split(|&b| b == b'\n') {
                if !before.contains(line) {
                    guards::check_line(&path, line, rules)?;
                }
            }
        }
        paths.push(path);
    }
    Ok(paths)
}

/// How a push may move the remote branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushMode {
    /// Only forward (a follow-up onto a branch people may have built on).
    FastForward,
    /// Replace it: `maur/<task-id>` belongs to this task alone, and a retry after an earlier
    /// attempt already pushed must be able to publish its own result.
    ReplaceOwn,
}

/// Pushes the task branch to `url`. A rejected update is transient: someone
/// pushed the branch meanwhile, and a retry starts from the new state.
pub fn push(
    checkout: &Checkout,
    url: &str,
    creds: Option<&GitCredentials>,
    mode: PushMode,
) -> Result<(), WorkspaceError> {
    if !url.contains("://") {
        return push_local(checkout, Path::new(url), mode);
    }
    let repo = open_own(checkout)?;
    let mut remote = repo
        .remote_anonymous(url)
        .map_err(|e| WorkspaceError::git("preparing the push", e))?;
    let mut rejected = None;
    {
        let mut cbs = callbacks(creds, url);
        cbs.push_update_reference(|refname, status| {
            if let Some(why) = status {
                rejected = Some(format!("{refname}: {why}"));
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(cbs);
        let force = if mode == PushMode::ReplaceOwn {
            "+"
        } else {
            ""
        };
        let spec = format!("{force}refs/heads/{0}:refs/heads/{0}", checkout.branch);
        remote
            .push(&[spec.as_str()], Some(&mut options))
            .map_err(|e| WorkspaceError::git("pushing", e))?;
    }
    match rejected {
        Some(why) => Err(WorkspaceError::Transient(format!(
            "the push was rejected ({why})"
        ))),
        None => Ok(()),
    }
}

/// libgit2 cannot push into a non-bare repository (a developer's working copy), so the
/// target fetches the branch from the checkout instead, with the same fast-forward rule.
fn push_local(checkout: &Checkout, target: &Path, mode: PushMode) -> Result<(), WorkspaceError> {
    // libgit2 fetches take `shallow.lock` in the target and fail rather than wait, so two
    // tasks pushing into one local repository at once would collide. The mirror's lock is
    // per repository and shared across processes: pushes queue behind each other there.
    let _lock = match checkout.objects.parent() {
        Some(mirror) => {
            let lock = File::create(mirror.with_extension("lock"))
                .map_err(|e| WorkspaceError::io("creating the mirror lock", e))?;
            lock.lock()
                .map_err(|e| WorkspaceError::io("locking the mirror", e))?;
            Some(lock)
        }
        None => None,
    };
    let source = Repository::open_bare(&checkout.git_dir)
        .map_err(|e| WorkspaceError::git("opening the checkout", e))?;
    let name = format!("refs/heads/{}", checkout.branch);
    let ours = source
        .refname_to_id(&name)
        .map_err(|e| WorkspaceError::git("reading the task branch", e))?;
    let repo = Repository::open(target)
        .map_err(|e| WorkspaceError::git("opening the target repository", e))?;
    if let Ok(theirs) = repo.refname_to_id(&name)
        && mode == PushMode::FastForward
        && theirs != ours
        && !source.graph_descendant_of(ours, theirs).unwrap_or(false)
    {
        return Err(WorkspaceError::Transient(format!(
            "the push was rejected ({name}: not a fast-forward)"
        )));
    }
    let mut remote = repo
        .remote_anonymous(&checkout.git_dir.to_string_lossy())
        .map_err(|e| WorkspaceError::git("preparing the push", e))?;
    remote
        .fetch(&[format!("+{name}:{name}").as_str()], None, None)
        .map_err(|e| WorkspaceError::git("pushing", e))?;
    Ok(())
}

fn sanitize(part: &str) -> String {
    part.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_only_go_to_the_forges_origin() {
        assert_eq!(
            origin("https://github.com/a/b"),
            origin("https://github.com:443/x/y")
        );
        assert_ne!(
            origin("https://github.com/a/b"),
            origin("https://evil.example/a/b")
        );
        assert_ne!(
            origin("https://github.com/a/b"),
            origin("http://github.com/a/b")
        );
        assert_eq!(origin("/srv/git/api"), None);
    }

    #[test]
    fn mirror_paths_stay_inside_the_data_dir() {
        let w = Workspaces::new(Path::new("/data"));
        assert_eq!(
            w.mirror_path("https://github.com/acme/api"),
            PathBuf::from("/data/mirrors/github.com/acme/api.git")
        );
        assert_eq!(
            w.mirror_path("http://127.0.0.1:8080/acme/api"),
            PathBuf::from("/data/mirrors/127.0.0.1:8080/acme/api.git")
        );
        assert_eq!(
            w.mirror_path("/srv/git/../api"),
            PathBuf::from("/data/mirrors/local/srv/git/api.git")
        );
        assert_eq!(w.checkout_path("../x"), PathBuf::from("/data/work/_x"));
    }
}
