//! bubblewrap around the agent: its checkout and its temporary home are writable, system
//! directories read-only, and the rest of the host (mirrors, other tasks' checkouts,
//! MAUR_DATA_DIR, /root, /home) does not exist. The network stays: it needs the LLM.

use std::path::{Path, PathBuf};

use super::process::Spec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    None,
    Bwrap,
}

/// System directories the agent may read; those missing on this host are skipped.
const READ_ONLY: &[&str] = &[
    "/usr",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/opt",
];

/// `/bin` and friends are symlinks into `/usr` on merged-usr systems, real dirs elsewhere.
const MAYBE_LINKS: &[&str] = &["/bin", "/sbin", "/lib", "/lib64", "/lib32"];

/// `shared` are read-only extras the agent needs (its checkout's borrowed object store).
pub fn wrap(spec: Spec, sandbox: Sandbox, workdir: &Path, home: &Path, shared: &[PathBuf]) -> Spec {
    match sandbox {
        Sandbox::None => spec,
        Sandbox::Bwrap => {
            let mut args = bwrap_args(
                workdir,
                home,
                |p| Path::new(p).exists(),
                |p| {
                    std::fs::read_link(p)
                        .ok()
                        .map(|t| t.to_string_lossy().into_owned())
                },
            );
            for path in shared {
                let p = path.to_string_lossy().into_owned();
                args.extend(["--ro-bind".to_owned(), p.clone(), p]);
            }
            args.push("--".into());
            args.push(spec.program.clone());
            args.extend(spec.args.iter().cloned());
            Spec {
                program: "bwrap".into(),
                args,
                ..spec
            }
        }
    }
}

/// Pure: the bwrap arguments for this host (as seen through `exists` and `link`).
pub fn bwrap_args(
    workdir: &Path,
    home: &Path,
    exists: impl Fn(&str) -> bool,
    link: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |a: &[&str]| args.extend(a.iter().map(|s| (*s).to_owned()));
    push(&[
        "--unshare-all",
        "--share-net",
        "--die-with-parent",
        "--new-session",
    ]);
    push(&["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
    for dir in READ_ONLY.iter().filter(|d| exists(d)) {
        push(&["--ro-bind", dir, dir]);
    }
    for dir in MAYBE_LINKS.iter().filter(|d| exists(d)) {
        match link(dir) {
            Some(target) => push(&["--symlink", &target, dir]),
            None => push(&["--ro-bind", dir, dir]),
        }
    }
    let home = home.to_string_lossy();
    let work = workdir.to_string_lossy();
    push(&[
        "--bind", &home, &home, "--bind", &work, &work, "--chdir", &work,
    ]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_checkout_and_home_are_writable() {
        let args = bwrap_args(
            Path::new("/data/work/t1"),
            Path::new("/tmp/maur-home-t1"),
            |p| p != "/opt" && p != "/lib32",
            |p| (p == "/bin").then(|| "usr/bin".to_owned()),
        );
        let joined = args.join(" ");
        assert!(joined.contains("--ro-bind /usr /usr"));
        assert!(joined.contains("--symlink usr/bin /bin"));
        assert!(joined.contains("--ro-bind /lib /lib"));
        assert!(!joined.contains("/opt"));
        assert!(joined.contains("--bind /data/work/t1 /data/work/t1"));
        assert!(joined.contains("--bind /tmp/maur-home-t1 /tmp/maur-home-t1"));
        assert!(joined.ends_with("--chdir /data/work/t1"));
        let binds: Vec<&String> = args
            .windows(2)
            .filter(|w| w[0] == "--bind")
            .map(|w| &w[1])
            .collect();
        assert_eq!(binds.len(), 2, "nothing else writable: {joined}");
        assert!(joined.contains("--unshare-all --share-net"));
    }
}
