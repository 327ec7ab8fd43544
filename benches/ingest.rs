//! Ingest benchmark: authenticated `POST /webhooks/exception` with unique fingerprints
//! against the real `maur serve` binary, at concurrency 1, 16 and 64.
//!
//! Run: `cargo bench --bench ingest` (BENCH_SECONDS=15 by default; BENCH_CONCURRENCY=1,16,64).
//! Prints requests/s, p50/p99 latency, and checks rows in Postgres = 2xx responses.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{BenchDb, machine, ms, percentile};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use tokio::net::TcpStream;

const TOKEN: &str = "bench-token-0123456789abcdef";

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let levels: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    let db = BenchDb::create().await;
    let pool = db.pool(2).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Command::new(env!("CARGO_BIN_EXE_maur"))
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("MAUR_BEARER_TOKEN", TOKEN)
        .env("MAUR_LISTEN", &addr)
        .env("MAUR_DEFAULT_REPO", "acme/api")
        .env("RUST_LOG", "warn")
        .env(
            "MAUR_DB_POOL_SIZE",
            std::env::var("MAUR_DB_POOL_SIZE").unwrap_or_else(|_| "16".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("start maur serve");
    let started = Instant::now();
    while TcpStream::connect(&addr).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "maur serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    println!("ingest: POST /webhooks/exception, unique fingerprints, {seconds}s per level");
    println!("machine: {}", machine());
    println!("| concurrency | requests | req/s | p50 | p99 | non-2xx | rows stored |");
    println!("|---|---|---|---|---|---|---|");
    for (level_no, &concurrency) in levels.iter().enumerate() {
        let before: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
            .fetch_one(&pool)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let t0 = Instant::now();
        let handles: Vec<_> = (0..concurrency)
            .map(|client| {
                let addr = addr.clone();
                tokio::spawn(load(addr, deadline, format!("{level_no}-{client}")))
            })
            .collect();
        let mut latencies = Vec::new();
        let mut ok = 0u64;
        let mut failed = 0u64;
        for h in handles {
            let (lat, good, bad) = h.await.unwrap();
            latencies.extend(lat);
            ok += good;
            failed += bad;
        }
        let elapsed = t0.elapsed();
        let after: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
            .fetch_one(&pool)
            .await
            .unwrap();
        let stored = after - before;
        let total = latencies.len();
        println!(
            "| {concurrency} | {total} | {:.0} | {} | {} | {failed} | {stored} (2xx: {ok}){} |",
            total as f64 / elapsed.as_secs_f64(),
            ms(percentile(&mut latencies, 50.0)),
            ms(percentile(&mut latencies, 99.0)),
            if stored as u64 == ok {
                ", equal"
            } else {
                ", MISMATCH"
            },
        );
    }
    let _ = server.kill();
    let _ = server.wait();
    pool.close().await;
    db.drop_db().await;
}

/// One keep-alive connection sending requests back to back until `deadline`.
async fn load(addr: String, deadline: Instant, tag: String) -> (Vec<Duration>, u64, u64) {
    let stream = TcpStream::connect(&addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let auth = Arc::new(format!("Bearer {TOKEN}"));
    let mut latencies = Vec::new();
    let (mut ok, mut bad) = (0, 0);
    let mut i = 0u64;
    while Instant::now() < deadline {
        i += 1;
        let body = format!(
            r#"{{"fingerprint":"bench-{tag}-{i}","title":"KeyError: 'email' in user_profile view","description":"Traceback (most recent call last):\n  File \"views.py\", line 42, in user_profile\nKeyError: 'email'","extra":{{"environment":"production","n":{i}}}}}"#
        );
        let req = Request::post("/webhooks/exception")
            .header("host", &addr)
            .header("authorization", auth.as_str())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let t = Instant::now();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        latencies.push(t.elapsed());
        if status.is_success() {
            ok += 1;
        } else {
            bad += 1;
        }
    }
    (latencies, ok, bad)
}
