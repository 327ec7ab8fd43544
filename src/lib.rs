//! maur: forge events, tickets and production errors in; reviewable pull requests out.

pub mod agent;
pub mod api;
pub mod app;
pub mod config;
pub mod forge;
pub mod github;
pub mod gitlab;
pub mod hub;
pub mod linear;
pub mod metrics;
pub mod oneshot;
pub mod repo;
pub mod report;
pub mod signing;
pub mod store;
pub mod task;
pub mod telemetry;
pub mod trigger;
pub mod worker;
pub mod workspace;

pub use signing::hex;

/// The schema, shared by `maur migrate`, start-up and every `#[sqlx::test]`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
