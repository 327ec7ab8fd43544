//! maur in Linear: settings, signed and fresh webhooks, which repository a ticket means, the
//! GraphQL client and the progress comment.

pub mod client;
pub mod repo;
pub mod settings;
pub mod signature;
pub mod sink;
pub mod webhook;
