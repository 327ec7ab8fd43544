use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use maur::app::App;
use maur::config::{AgentKind, Config};
use maur::oneshot;
use maur::store::db;
use maur::task::Outcome;

/// maur turns issues, tickets and production errors into reviewable pull requests.
///
/// Configuration comes from the environment (and a .env file in the working directory);
/// see README.md for every variable.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// API, worker and reporter in one process: the single-machine default.
    Up(StartArgs),
    /// The HTTP API only (stateless; run as many replicas as you like).
    Serve(StartArgs),
    /// Worker and reporter only (run as many as you like; they share the Postgres queue).
    /// Serves /health, /ready and /metrics on MAUR_LISTEN for probes.
    Worker(StartArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Run one task in the foreground against a repository, without server or database.
    ///
    /// Shows the steps and the agent's actions live, prints the branch, diffstat and token
    /// usage, and exits non-zero with the reason when the task fails.
    Run(RunArgs),
    /// GitHub App helpers.
    #[command(subcommand)]
    Github(GithubCommand),
    /// GitLab helpers.
    #[command(subcommand)]
    Gitlab(GitlabCommand),
}

#[derive(Subcommand)]
enum GitlabCommand {
    /// Register (or update) a project's webhook pointing at this maur, with the events it
    /// reads and GITLAB_WEBHOOK_SECRET, through the API with GITLAB_TOKEN.
    Hook {
        /// The project, e.g. group/name
        #[arg(long)]
        project: String,
        /// The public base URL of this maur, e.g. https://maur.example.com
        #[arg(long)]
        url: String,
    },
}

#[derive(Subcommand)]
enum GithubCommand {
    /// Print the App manifest (app-manifest.yml) as the JSON GitHub's manifest flow takes,
    /// with every URL pointing at --url. Or let `maur up` do it all: open /github/setup.
    Manifest {
        /// The public base URL of this maur, e.g. https://maur.example.com
        #[arg(long)]
        url: String,
    },
}

#[derive(Args)]
struct RunArgs {
    /// The repository: a local path, a file:// URL (or, with a forge configured, owner/name).
    #[arg(long)]
    repo: String,
    /// Base branch (default: the repository's default branch).
    #[arg(long)]
    branch: Option<String>,
    /// Which agent runs the prompt (default: MAUR_AGENT, else opencode).
    #[arg(long, value_parser = ["opencode", "command"])]
    agent: Option<String>,
    /// With --agent command: the shell command, using {prompt_file} and {workdir}.
    #[arg(long)]
    agent_command: Option<String>,
    /// Title for the commit (default: the prompt's first line).
    #[arg(long)]
    title: Option<String>,
    /// What the agent should do.
    prompt: String,
}

#[derive(Args)]
struct StartArgs {
    /// Do not apply pending migrations at start (run `maur migrate` separately).
    #[arg(long)]
    no_migrate: bool,
    /// The GitHub App setup flow (/github/setup) writes the new App's credentials to
    /// MAUR_DATA_DIR/github-app.env (mode 0600) instead of showing them on the page.
    #[arg(long, visible_alias = "write")]
    write_github_env: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Needs no configuration: usable before anything is set up.
    if let Command::Github(GithubCommand::Manifest { url }) = &cli.command {
        return match maur::github::manifest::manifest(url) {
            Ok(json) => {
                println!("{json:#}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: reading .env: {e}");
        return ExitCode::FAILURE;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    maur::telemetry::init(config.log_format);
    match run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, mut config: Config) -> anyhow::Result<()> {
    let (args, api, worker) = match command {
        Command::Github(_) => unreachable!("handled before configuration"),
        Command::Gitlab(GitlabCommand::Hook { project, url }) => {
            return gitlab_hook(&config, &project, &url).await;
        }
        Command::Run(args) => return run_once(args, config).await,
        Command::Migrate => {
            let pool = db::connect(&config).await?;
            db::migrate(&pool, &config.database_url_masked()).await?;
            println!("migrations applied to {}", config.database_url_masked());
            return Ok(());
        }
        Command::Up(a) => (a, true, true),
        Command::Serve(a) => (a, true, false),
        Command::Worker(a) => (a, false, true),
    };
    config.github.write_env = args.write_github_env;
    if api {
        config.require_api()?;
    }
    let pool = db::connect(&config).await?;
    if !args.no_migrate {
        db::migrate(&pool, &config.database_url_masked()).await?;
    }
    let listen = config.listen;
    let listener = TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen on {listen} (MAUR_LISTEN): is another process using the port?")
    })?;

    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    let app = App::build(config, pool, shutdown.clone())
        .await
        .context("cannot LISTEN for queue notifications on Postgres")?;

    let worker_task = if worker {
        let pipeline = app.pipeline().with_context(|| {
            format!(
                "cannot use MAUR_DATA_DIR={}",
                app.state.config.data_dir.display()
            )
        })?;
        // Forges and Linear add their sinks here as they are configured.
        let reporter = app.reporter(app.sinks());
        tokio::spawn(reporter.run(shutdown.clone()));
        Some(tokio::spawn(app.worker(pipeline).run(shutdown.clone())))
    } else {
        None
    };
    tracing::info!(
        %listen,
        mode = if api && worker { "up" } else if api { "serve" } else { "worker" },
        "maur started"
    );
    let served = if api {
        app.serve(listener).await
    } else {
        app.serve_probes(listener).await
    };
    if served.is_err() {
        // Let the worker hand its tasks back before exiting.
        shutdown.cancel();
    }
    if let Some(w) = worker_task {
        w.await.context("worker task failed")?;
    }
    served.context("the HTTP server failed")?;
    Ok(())
}

async fn run_once(args: RunArgs, mut config: Config) -> anyhow::Result<()> {
    match (args.agent.as_deref(), args.agent_command) {
        (Some("opencode"), _) => config.agent.kind = AgentKind::OpenCode,
        (_, Some(cmd)) => config.agent.kind = AgentKind::Command(cmd),
        (Some("command"), None) => match &config.agent.kind {
            AgentKind::Command(_) => {}
            AgentKind::OpenCode => anyhow::bail!(
                "--agent command needs --agent-command (or MAUR_AGENT_COMMAND): the shell command to run"
            ),
        },
        _ => {}
    }
    let stop = CancellationToken::new();
    let on_ctrl_c = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let request = oneshot::Request {
        repo: args.repo,
        branch: args.branch,
        title: args.title,
        prompt: args.prompt,
    };
    let (task, done, (input, output, cost)) =
        oneshot::run(&config, request, oneshot::Terminal::new(), stop)
            .await
            .map_err(|e| anyhow::anyhow!("the task failed: {e}"))?;
    println!();
    match (done.outcome, &done.pr_url, &done.branch) {
        (Outcome::NoChanges, _, _) => println!("The agent changed nothing."),
        (_, Some(url), _) => println!("Pull request: {url}"),
        (_, None, Some(branch)) => println!("Pushed branch {branch} to {}", task.repo_url),
        _ => {}
    }
    if let Some(summary) = done.summary.as_deref() {
        println!("{summary}");
    }
    if input + output > 0 {
        println!(
            "Tokens: {input} in, {output} out{}",
            if cost > 0.0 {
                format!(", ${cost:.4}")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// First SIGINT/SIGTERM: stop claiming, drain, release. Second: exit now.
async fn on_signal(shutdown: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("shutting down; signal again to exit immediately");
    shutdown.cancel();
    wait_for_signal().await;
    tracing::warn!("second signal: exiting now; leases of running tasks will expire");
    std::process::exit(130);
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn gitlab_hook(config: &Config, project: &str, base: &str) -> anyhow::Result<()> {
    use maur::gitlab::hook::{Registered, register};
    let secret = config.gitlab.webhook_secrets.first().ok_or_else(|| {
        anyhow::anyhow!("GITLAB_TOKEN and GITLAB_WEBHOOK_SECRET must be set to register a hook")
    })?;
    match url::Url::parse(base) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            anyhow::bail!("--url: expected the public http(s) base URL of this maur, got {base:?}")
        }
    }
    let gl = maur::gitlab::client::GitLab::new(&config.gitlab)?;
    let url = format!("{}/webhooks/gitlab", base.trim_end_matches('/'));
    match register(&gl, project, base, secret).await? {
        Registered::Created(id) => println!("created hook {id} on {project}: {url}"),
        Registered::Updated(id) => println!("updated hook {id} on {project}: {url}"),
    }
    Ok(())
}
