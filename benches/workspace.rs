//! Workspace benchmark: preparing a task's checkout from a warm mirror versus a plain
//! `git clone` of the same repository (what the Python Maur did for every task), on a
//! generated repository of about 20,000 commits and 5,000 files; and the pipeline's own
//! overhead per task with an instant agent.
//!
//! Run: `cargo bench --bench workspace` (BENCH_COMMITS=20000, BENCH_FILES=5000, BENCH_RUNS=7).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{machine, ms, percentile};
use maur::agent::Limits;
use maur::agent::command::CommandAgent;
use maur::agent::sandbox::Sandbox;
use maur::forge::local::LocalForge;
use maur::repo::RepoRef;
use maur::store::StoreError;
use maur::task::{NewTask, Source, Task};
use maur::worker::pipeline::{Pipeline, Progress, TaskContext};
use maur::worker::work::WorkPipeline;
use maur::workspace::guards::GuardRules;
use maur::workspace::{Author, Workspaces};
use serde_json::Value;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maur-bench-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A repository with `files` files in its first commit and `commits` commits in all, each
/// later commit changing one file: made with `git fast-import` in seconds.
fn generate(dir: &Path, commits: usize, files: usize) {
    let run = |args: &[&str]| {
        let ok = Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    run(&["init", "-q", "-b", "main"]);
    let mut fi = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = std::io::BufWriter::new(fi.stdin.take().unwrap());
    let mut mark = 0;
    for c in 0..commits {
        mark += 1;
        writeln!(input, "commit refs/heads/main\nmark :{mark}").unwrap();
        writeln!(
            input,
            "committer Dev <dev@example.com> {} +0000",
            1_600_000_000 + c
        )
        .unwrap();
        let msg = format!("change {c}");
        writeln!(input, "data {}\n{msg}", msg.len()).unwrap();
        if c > 0 {
            writeln!(input, "from :{}", mark - 1).unwrap();
        }
        let touched: Vec<usize> = if c == 0 {
            (0..files).collect()
        } else {
            vec![c % files]
        };
        for f in touched {
            let content = format!(
                "// file {f}, revision {c}\npub fn f{f}() -> usize {{ {c} }}\n{}\n",
                "x".repeat(200)
            );
            writeln!(
                input,
                "M 644 inline src/m{}/f{f}.rs\ndata {}\n{content}",
                f % 50,
                content.len()
            )
            .unwrap();
        }
    }
    drop(input);
    assert!(fi.wait().unwrap().success());
    run(&["checkout", "-q", "main"]);
}

struct Quiet;

#[async_trait]
impl Progress for Quiet {
    async fn event(&self, _: &str, _: Value) -> Result<(), StoreError> {
        Ok(())
    }
    async fn usage(&self, _: i64, _: i64, _: f64) -> Result<(), StoreError> {
        Ok(())
    }
    async fn log(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    percentile(samples, 50.0)
}

#[tokio::main]
async fn main() {
    let commits: usize = env_or("BENCH_COMMITS", 20_000);
    let files: usize = env_or("BENCH_FILES", 5_000);
    let runs: usize = env_or("BENCH_RUNS", 7);
    println!("workspace: {commits} commits, {files} files, median of {runs} runs");
    println!("machine: {}", machine());

    let src = temp("src");
    let t0 = Instant::now();
    generate(&src, commits, files);
    println!(
        "generated the repository in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let url = src.to_string_lossy().into_owned();

    // Baseline: a fresh clone per task through git's pack protocol, as over the network.
    let mut clones = Vec::new();
    for i in 0..runs {
        let dest = temp(&format!("clone{i}"));
        let t = Instant::now();
        let ok = Command::new("git")
            .args(["clone", "-q", "--no-local", &url])
            .arg(dest.join("repo"))
            .status()
            .unwrap()
            .success();
        assert!(ok);
        clones.push(t.elapsed());
        let _ = std::fs::remove_dir_all(&dest);
    }

    let data = temp("data");
    let ws = Workspaces::new(&data);
    let t = Instant::now();
    ws.prepare(&url, None, "cold", None, "maur/cold").unwrap();
    let cold = t.elapsed();
    ws.remove("cold");
    let mut warm = Vec::new();
    for i in 0..runs {
        let id = format!("warm{i}");
        let t = Instant::now();
        ws.prepare(&url, None, &id, None, &format!("maur/{id}"))
            .unwrap();
        warm.push(t.elapsed());
        ws.remove(&id);
    }
    // Warm mirror and a finished checkout parked by the previous task: the usual case
    // once a worker has run one task for the repository. Parking (reset + rename) is paid
    // when a task ends; preparing is what the next task waits for.
    let mut reused = Vec::new();
    let mut parked = Vec::new();
    let mut previous = ws
        .prepare(&url, None, "reuse0", None, "maur/reuse0")
        .unwrap();
    for i in 1..=runs {
        // What an agent does: edit a file, leave something behind.
        std::fs::write(
            previous.path.join("src/m0/f0.rs"),
            format!("// edited {i}\n"),
        )
        .unwrap();
        std::fs::write(previous.path.join("scratch.txt"), "notes\n").unwrap();
        let t = Instant::now();
        ws.recycle(&previous, &format!("reuse{}", i - 1));
        parked.push(t.elapsed());
        let id = format!("reuse{i}");
        let t = Instant::now();
        previous = ws
            .prepare(&url, None, &id, None, &format!("maur/{id}"))
            .unwrap();
        reused.push(t.elapsed());
    }
    ws.remove(&format!("reuse{runs}"));
    // The floor for any fresh checkout: git writing the same tree from the same objects.
    let mirror = ws.mirror_path(&url);
    let mut floor = Vec::new();
    for i in 0..runs {
        let dest = temp(&format!("shared{i}"));
        let t = Instant::now();
        let ok = Command::new("git")
            .args(["clone", "-q", "--shared"])
            .arg(&mirror)
            .arg(dest.join("repo"))
            .status()
            .unwrap()
            .success();
        assert!(ok);
        floor.push(t.elapsed());
        let _ = std::fs::remove_dir_all(&dest);
    }
    let clone_median = median(&mut clones);
    let warm_median = median(&mut warm);
    let floor_median = median(&mut floor);
    let reused_median = median(&mut reused);
    let parked_median = median(&mut parked);
    println!();
    println!("| what | median |");
    println!("|---|---|");
    println!(
        "| `git clone --no-local` (fresh clone per task) | {} |",
        ms(clone_median)
    );
    println!(
        "| maur prepare, cold (creates the mirror) | {} (one run) |",
        ms(cold)
    );
    println!(
        "| maur prepare, warm mirror, fresh tree (fetch + local checkout) | {} |",
        ms(warm_median)
    );
    println!(
        "| maur prepare, warm mirror, reused checkout (the usual case) | {} |",
        ms(reused_median)
    );
    println!(
        "| parking a finished checkout (reset to the base, at the end of a task) | {} |",
        ms(parked_median)
    );
    println!(
        "| floor: `git clone --shared` from the mirror (writing the tree alone) | {} |",
        ms(floor_median)
    );
    println!(
        "\nwarm preparation with a reused checkout is {:.1}x faster than a fresh clone ({:.1}x with a fresh tree, whose cost beyond writing the tree is {})",
        clone_median.as_secs_f64() / reused_median.as_secs_f64(),
        clone_median.as_secs_f64() / warm_median.as_secs_f64(),
        ms(warm_median.saturating_sub(floor_median))
    );

    // Pipeline overhead: everything but the agent (which edits one file and exits).
    let small = temp("small");
    generate(&small, 50, 200);
    let pipeline = WorkPipeline {
        forges: vec![Arc::new(LocalForge)],
        workspaces: Workspaces::new(&temp("data2")),
        agent: Arc::new(CommandAgent {
            subject: "the command",
            template: "echo changed >> README.md".into(),
            extra_env: vec![],
            limits: Limits {
                timeout: Duration::from_secs(60),
                max_log: 1 << 20,
                sandbox: Sandbox::None,
            },
        }),
        check: None,
        author: Author {
            name: "maur".into(),
            email: "maur@example.com".into(),
        },
        guards: GuardRules {
            allow_workflow_changes: false,
            max_file_bytes: 5 << 20,
            own_secrets: vec![],
        },
    };
    let repo = small.to_string_lossy().into_owned();
    let mut overhead = Vec::new();
    for i in 0..(runs * 3) {
        let task = Task::adhoc(&NewTask {
            source: Source::Manual,
            dedup_key: None,
            title: format!("bench {i}"),
            prompt: "append a line".into(),
            repo_given: repo.clone(),
            repo: RepoRef::parse(&repo).unwrap(),
            repo_branch: None,
            context: serde_json::json!({}),
            max_attempts: 1,
            report_to: None,
        });
        let ctx = TaskContext {
            progress: Box::new(Quiet),
            stop: tokio_util::sync::CancellationToken::new(),
        };
        let t = Instant::now();
        pipeline.run(&task, &ctx).await.unwrap();
        overhead.push(t.elapsed());
    }
    println!(
        "\npipeline per task with an instant agent (small repo: checkout, agent process, commit, push, cleanup): p50 {}, p99 {} over {} tasks",
        ms(percentile(&mut overhead, 50.0)),
        ms(percentile(&mut overhead, 99.0)),
        runs * 3
    );
    for dir in [src, small, data] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
