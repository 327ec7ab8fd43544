//! Shared by the benchmarks: a fresh database per run on the test server, and percentiles.
#![allow(dead_code)]

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};

pub struct BenchDb {
    pub url: String,
    pub name: String,
    admin: PgConnectOptions,
}

impl BenchDb {
    /// Creates `maur_bench_<random>` on the server DATABASE_URL points at (default: local).
    pub async fn create() -> Self {
        let base = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("maur_bench_{}", uuid::Uuid::new_v4().simple());
        let admin: PgConnectOptions = base.parse().expect("DATABASE_URL");
        let mut conn = admin.connect().await.expect("connect to Postgres");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let mut url = url::Url::parse(&base).unwrap();
        url.set_path(&name);
        Self {
            url: url.to_string(),
            name,
            admin,
        }
    }

    pub async fn pool(&self, size: u32) -> PgPool {
        let pool = maur::store::db::pool_options(size)
            .connect(&self.url)
            .await
            .unwrap();
        maur::MIGRATOR.run(&pool).await.unwrap();
        pool
    }

    pub async fn drop_db(self) {
        let mut conn = self.admin.connect().await.unwrap();
        let _ = sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await;
    }
}

/// The `p`th percentile (0..=100) of unsorted samples.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}
