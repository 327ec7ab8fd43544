//! Prometheus metrics. One registry per process (no globals), so tests can run many apps.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub tasks: Family<StatusLabels, Gauge>,
    pub queue_depth: Gauge,
    pub claim_latency: Histogram,
    pub task_duration: Family<StatusLabels, Histogram>,
}

fn duration_histogram() -> Histogram {
    // 0.1 s … ~1.8 h: agent runs are minutes long.
    Histogram::new(exponential_buckets(0.1, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("maur");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let tasks = Family::<StatusLabels, Gauge>::default();
        registry.register("tasks", "Tasks in the database by status", tasks.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Queued tasks that are due and waiting for a worker",
            queue_depth.clone(),
        );
        // 0.5 ms … ~16 s: from due to claimed, milliseconds when a worker is idle.
        let claim_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "claim_latency_seconds",
            "Time from a task becoming due to a worker claiming it (this process's claims)",
            claim_latency.clone(),
        );
        let task_duration = Family::<StatusLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "task_duration_seconds",
            "Wall time of task attempts run by this process, by how they ended",
            task_duration.clone(),
        );
        Self {
            registry,
            requests,
            tasks,
            queue_depth,
            claim_latency,
            task_duration,
        }
    }
}

impl Metrics {
    pub fn observe_claim(&self, wait: Duration) {
        self.claim_latency.observe(wait.as_secs_f64());
    }

    pub fn observe_task(&self, status: &str, took: Duration) {
        self.task_duration
            .get_or_create(&StatusLabels {
                status: status.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Sets the gauges read from the database at scrape time.
    pub fn set_task_counts(&self, counts: &[(String, i64)], depth: i64) {
        for status in crate::task::TaskStatus::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map_or(0, |(_, n)| *n);
            self.tasks
                .get_or_create(&StatusLabels {
                    status: status.as_str().to_owned(),
                })
                .set(n);
        }
        self.queue_depth.set(depth);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
