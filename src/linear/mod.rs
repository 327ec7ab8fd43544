//! maur in Linear: settings, signed and fresh webhooks, and which repository a ticket means.

pub mod repo;
pub mod settings;
pub mod signature;
