//! Wiring: one construction path for `main`, the tests and the benchmarks alike.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::auth::TokenSet;
use crate::api::{self, AppState};
use crate::config::{AgentKind, Config};
use crate::forge::Forge;
use crate::forge::local::LocalForge;
use crate::github::client::GitHub;
use crate::github::forge::GitHubForge;
use crate::gitlab::client::GitLab;
use crate::gitlab::forge::GitLabForge;
use crate::hub::Hub;
use crate::linear::client::Linear;
use crate::linear::sink::LinearSink;
use crate::metrics::Metrics;
use crate::report::forge_sink::ForgeSink;
use crate::report::render::RenderOptions;
use crate::report::{Reporter, ReporterConfig, Sinks};
use crate::worker::work::WorkPipeline;
use crate::worker::{Pipeline, Worker, WorkerConfig};
use crate::workspace::guards::GuardRules;
use crate::workspace::{Author, Workspaces};

/// What every mode shares: the pool, the LISTEN hub, metrics and the shutdown signal.
pub struct App {
    pub state: AppState,
}

impl App {
    /// Starts the LISTEN hub; the pool must already be connected and migrated.
    pub async fn build(
        config: Config,
        pool: PgPool,
        shutdown: CancellationToken,
    ) -> Result<Self, sqlx::Error> {
        let hub = Hub::start(pool.clone(), shutdown.clone()).await?;
        let tokens = Arc::new(TokenSet::new(&config.bearer_tokens));
        // Settings were validated when the config was parsed, so this only fails on a key
        // that parsed then but not now, which cannot happen; say so rather than panic.
        let github = match &config.github.app {
            Some(_) => match GitHub::new(&config.github, pool.clone()) {
                Ok(gh) => Some(Arc::new(GitHubForge { gh })),
                Err(e) => return Err(sqlx::Error::Configuration(e.to_string().into())),
            },
            None => None,
        };
        let gitlab = match &config.gitlab.token {
            Some(_) => match GitLab::new(&config.gitlab) {
                Ok(gl) => Some(Arc::new(GitLabForge { gl })),
                Err(e) => return Err(sqlx::Error::Configuration(e.to_string().into())),
            },
            None => None,
        };
        let linear = match &config.linear.api_key {
            Some(_) => match Linear::new(&config.linear) {
                Ok(l) => Some(l),
                Err(e) => return Err(sqlx::Error::Configuration(e.to_string().into())),
            },
            None => None,
        };
        Ok(Self {
            state: AppState {
                github,
                gitlab,
                linear,
                setup_states: Arc::default(),
                pool,
                hub,
                metrics: Arc::new(Metrics::default()),
                tokens,
                shutdown,
                sse_poll: Duration::from_secs(5),
                config: Arc::new(config),
            },
        })
    }

    pub fn worker(&self, pipeline: Arc<dyn Pipeline>) -> Arc<Worker> {
        Worker::new(
            self.state.pool.clone(),
            Arc::clone(&self.state.hub),
            pipeline,
            Arc::clone(&self.state.metrics),
            WorkerConfig::from_config(&self.state.config),
        )
    }

    /// The pipeline the configuration describes: the configured agent, every configured forge.
    pub fn pipeline(&self) -> std::io::Result<Arc<dyn Pipeline>> {
        let mut pipeline = work_pipeline(&self.state.config)?;
        pipeline.forges.extend(self.forges());
        Ok(Arc::new(pipeline))
    }

    /// The forges beyond the local one, as configured.
    pub fn forges(&self) -> Vec<Arc<dyn Forge>> {
        let mut forges: Vec<Arc<dyn Forge>> = Vec::new();
        // A bare `owner/name` goes to the first forge that takes it: GitHub, then GitLab.
        if let Some(gh) = &self.state.github {
            forges.push(gh.clone());
        }
        if let Some(gl) = &self.state.gitlab {
            forges.push(gl.clone());
        }
        forges
    }

    /// A progress sink for every configured forge (keyed by the forge's name) and Linear.
    pub fn sinks(&self) -> Sinks {
        let mut sinks: Sinks = self
            .forges()
            .into_iter()
            .map(|forge| {
                let sink: Arc<dyn crate::report::ReportSink> = Arc::new(ForgeSink {
                    forge: forge.clone(),
                });
                (forge.name().to_owned(), sink)
            })
            .collect();
        if let Some(linear) = &self.state.linear {
            sinks.insert(
                "linear".to_owned(),
                Arc::new(LinearSink {
                    linear: linear.clone(),
                }),
            );
        }
        sinks
    }

    /// The reporter for `sinks` (one per kind of place progress can be reported to).
    pub fn reporter(&self, sinks: Sinks) -> Arc<Reporter> {
        self.reporter_with(sinks, self.reporter_config())
    }

    pub fn reporter_with(&self, sinks: Sinks, config: ReporterConfig) -> Arc<Reporter> {
        Reporter::new(
            self.state.pool.clone(),
            Arc::clone(&self.state.hub),
            sinks,
            config,
        )
    }

    /// The reporter's settings as the configuration gives them.
    pub fn reporter_config(&self) -> ReporterConfig {
        let config = &self.state.config;
        ReporterConfig {
            min_interval: config.report_interval,
            render: RenderOptions {
                model: matches!(config.agent.kind, AgentKind::OpenCode)
                    .then(|| config.agent.llm_model.clone()),
                price_input: config.llm_price_input,
                price_output: config.llm_price_output,
            },
            ..ReporterConfig::default()
        }
    }

    /// Serves the full API until shutdown; in-flight requests finish, SSE streams end.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        serve_router(
            api::router(self.state.clone()),
            listener,
            self.state.shutdown.clone(),
        )
        .await
    }

    /// Serves only `/health`, `/ready` and `/metrics` (for `maur worker`'s probes).
    pub async fn serve_probes(&self, listener: TcpListener) -> std::io::Result<()> {
        serve_router(
            api::probes(self.state.clone()),
            listener,
            self.state.shutdown.clone(),
        )
        .await
    }
}

/// Builds the work pipeline; also used by `maur run`, which has no server or database.
pub fn work_pipeline(config: &Config) -> std::io::Result<WorkPipeline> {
    // Absolute, so checkouts can be bound into the sandbox and survive a changed cwd.
    std::fs::create_dir_all(&config.data_dir)?;
    let data_dir = std::fs::canonicalize(&config.data_dir)?;
    Ok(WorkPipeline {
        forges: vec![Arc::new(LocalForge)],
        workspaces: Workspaces::new(&data_dir),
        agent: crate::agent::from_config(&config.agent),
        check: config
            .agent
            .check_command
            .as_deref()
            .map(|cmd| crate::agent::check_from_config(&config.agent, cmd)),
        author: Author {
            name: config.git_author_name.clone(),
            email: config.git_author_email.clone(),
        },
        guards: GuardRules {
            allow_workflow_changes: config.allow_workflow_changes,
            max_file_bytes: config.max_file_bytes,
            own_secrets: config.own_secrets(),
        },
    })
}

async fn serve_router(
    router: axum::Router,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
