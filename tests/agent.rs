//! Agents as real child processes: a clean environment, output as events, limits enforced on
//! the whole process tree, and (with bubblewrap) nothing visible but the checkout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use maur::agent::command::CommandAgent;
use maur::agent::sandbox::Sandbox;
use maur::agent::{Agent, AgentError, AgentEvent, AgentRun, Limits};
use tokio::sync::mpsc;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maur-agent-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn agent(template: &str, timeout: Duration, sandbox: Sandbox) -> CommandAgent {
    CommandAgent {
        subject: "the command",
        template: template.into(),
        extra_env: vec![("MAUR_LLM_API".into(), "http://127.0.0.1:11434/v1".into())],
        limits: Limits {
            timeout,
            max_log: 64 * 1024,
            sandbox,
        },
    }
}

fn run_in(workdir: &Path) -> AgentRun {
    AgentRun {
        task_id: "t1".into(),
        workdir: workdir.to_path_buf(),
        home: temp("home"),
        prompt: "Fix the off-by-one in pagination".into(),
        shared: vec![],
    }
}

async fn run(
    a: &CommandAgent,
    r: &AgentRun,
) -> (
    Result<maur::agent::AgentOutcome, AgentError>,
    Vec<AgentEvent>,
) {
    let (tx, mut rx) = mpsc::channel(16);
    // Drain while it runs, as the worker does: a full channel holds the agent back.
    let collect = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let result = a.run(r, tx).await;
    (result, collect.await.unwrap())
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); check its state too.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"),
        Err(_) => false,
    }
}

/// Waits until `pid` is gone (hang-guarded), failing with `what` if it never goes.
async fn wait_gone(pid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_prompt_arrives_and_stdout_lines_become_events() {
    let work = temp("work");
    let a = agent(
        "cat {prompt_file} > {workdir}/seen.txt; echo 'reading the code'; echo; echo 'done: fixed it'",
        Duration::from_secs(60),
        Sandbox::None,
    );
    let (result, events) = run(&a, &run_in(&work)).await;
    let outcome = result.unwrap();
    assert_eq!(
        std::fs::read_to_string(work.join("seen.txt")).unwrap(),
        "Fix the off-by-one in pagination"
    );
    assert_eq!(
        events,
        vec![
            AgentEvent::Text {
                text: "reading the code".into()
            },
            AgentEvent::Text {
                text: "done: fixed it".into()
            },
        ]
    );
    assert_eq!(outcome.summary.as_deref(), Some("done: fixed it"));
    assert!(outcome.log.contains("reading the code"));
}

#[tokio::test]
async fn the_environment_is_built_from_nothing() {
    // SAFETY: set before any other thread of this test process reads the environment.
    unsafe {
        std::env::set_var("DATABASE_URL", "postgres://maur:db-password@db/maur");
        std::env::set_var("MAUR_BEARER_TOKEN", "api-token-must-not-leak");
        std::env::set_var("GITHUB_WEBHOOK_SECRET", "webhook-secret-must-not-leak");
    }
    let work = temp("work");
    let a = agent(
        "env > {workdir}/env.txt",
        Duration::from_secs(60),
        Sandbox::None,
    );
    let r = run_in(&work);
    run(&a, &r).await.0.unwrap();
    let env = std::fs::read_to_string(work.join("env.txt")).unwrap();
    for leak in [
        "db-password",
        "api-token-must-not-leak",
        "webhook-secret-must-not-leak",
        "DATABASE_URL",
    ] {
        assert!(!env.contains(leak), "{leak} reached the agent:\n{env}");
    }
    let home = r.home.to_string_lossy();
    assert!(env.contains(&format!("HOME={home}\n")), "{env}");
    assert!(env.contains(&format!("TMPDIR={home}/tmp\n")), "{env}");
    assert!(
        env.contains(&format!("XDG_CACHE_HOME={home}/.cache\n")),
        "{env}"
    );
    assert!(
        env.contains("MAUR_LLM_API=http://127.0.0.1:11434/v1\n"),
        "{env}"
    );
}

#[tokio::test]
async fn a_failing_command_fails_with_its_last_words() {
    let work = temp("work");
    let a = agent(
        "echo 'cannot find module'; exit 3",
        Duration::from_secs(60),
        Sandbox::None,
    );
    let err = run(&a, &run_in(&work)).await.0.unwrap_err();
    assert_eq!(
        err,
        AgentError::Failed("the command exited with code 3: cannot find module".into())
    );
}

#[tokio::test]
async fn a_hanging_agent_is_killed_at_the_timeout_with_its_children() {
    let work = temp("work");
    let a = agent(
        "sleep 300 & echo $! > {workdir}/child.pid; sleep 300",
        Duration::from_secs(1),
        Sandbox::None,
    );
    let started = Instant::now();
    let err = run(&a, &run_in(&work)).await.0.unwrap_err();
    assert_eq!(err, AgentError::TimedOut(Duration::from_secs(1)));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "returned at the timeout, not at the end"
    );
    let child: i32 = std::fs::read_to_string(work.join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(child, "the agent's child survived").await;
}

#[tokio::test]
async fn nothing_the_agent_started_outlives_it() {
    let work = temp("work");
    let a = agent(
        "sleep 300 > /dev/null 2>&1 & echo $! > {workdir}/child.pid; echo done",
        Duration::from_secs(60),
        Sandbox::None,
    );
    run(&a, &run_in(&work)).await.0.unwrap();
    let child: i32 = std::fs::read_to_string(work.join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(child, "a background child survived the agent").await;
}

#[tokio::test]
async fn a_cancelled_run_kills_the_agent() {
    let work = temp("work");
    let a = agent(
        "echo $$ > {workdir}/pid; sleep 300",
        Duration::from_secs(600),
        Sandbox::None,
    );
    let r = run_in(&work);
    let (tx, _rx) = mpsc::channel(16);
    let fut = a.run(&r, tx);
    // Dropping the future is what the worker does on cancel.
    let _ = tokio::time::timeout(Duration::from_millis(500), fut).await;
    let pid: i32 = std::fs::read_to_string(work.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(pid, "the agent survived cancellation").await;
}

#[tokio::test]
async fn output_is_capped_head_and_tail() {
    let work = temp("work");
    let mut a = agent(
        "echo FIRST; i=0; while [ $i -lt 5000 ]; do echo 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'; i=$((i+1)); done; echo LAST",
        Duration::from_secs(60),
        Sandbox::None,
    );
    a.limits.max_log = 4096;
    let outcome = run(&a, &run_in(&work)).await.0.unwrap();
    assert!(outcome.log.len() < 4096 + 200, "{}", outcome.log.len());
    assert!(outcome.log.starts_with("FIRST\n"));
    assert!(outcome.log.trim_end().ends_with("LAST"));
    assert!(outcome.log.contains("bytes omitted"));
}

#[tokio::test]
async fn in_bubblewrap_the_agent_sees_only_its_checkout() {
    if std::process::Command::new("bwrap")
        .arg("--version")
        .output()
        .is_err()
    {
        // .ci/run installs bubblewrap, so CI always runs this.
        eprintln!(
            "\n\n!!! SKIPPED: bubblewrap (bwrap) is not installed; `apt-get install bubblewrap` !!!\n"
        );
        return;
    }
    let data = temp("data");
    let work = data.join("work/t1");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(data.join("planted-secret.txt"), "must not be readable").unwrap();
    std::fs::create_dir_all(data.join("mirrors")).unwrap();
    let a = agent(
        &format!(
            "cat {}/planted-secret.txt > {{workdir}}/stolen.txt 2>&1; ls {}/mirrors >> {{workdir}}/stolen.txt 2>&1; echo edited > {{workdir}}/result.txt; echo ok",
            data.display(),
            data.display()
        ),
        Duration::from_secs(60),
        Sandbox::Bwrap,
    );
    let outcome = run(&a, &run_in(&work)).await.0.unwrap();
    assert_eq!(outcome.summary.as_deref(), Some("ok"));
    assert_eq!(
        std::fs::read_to_string(work.join("result.txt")).unwrap(),
        "edited\n"
    );
    let stolen = std::fs::read_to_string(work.join("stolen.txt")).unwrap();
    assert!(!stolen.contains("must not be readable"), "{stolen}");
    assert!(stolen.contains("No such file"), "{stolen}");
}

#[tokio::test]
async fn an_over_long_line_is_dropped_and_the_agent_goes_on() {
    let work = temp("work");
    let a = agent(
        "head -c 2000000 /dev/zero | tr '\\0' x; echo; echo 'still here'",
        Duration::from_secs(60),
        Sandbox::None,
    );
    let (result, events) = run(&a, &run_in(&work)).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.summary.as_deref(), Some("still here"));
    assert!(outcome.log.contains("[a line over 1 MiB was dropped]"));
    assert_eq!(events.len(), 1, "only the short line became an event");
}
