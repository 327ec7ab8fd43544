//! maur as a GitHub App: settings, the App's JWT and installation tokens, the REST client,
//! webhook decisions, `/maur` commands, the forge and the setup flow.

pub mod client;
pub mod command;
pub mod forge;
pub mod jwt;
pub mod manifest;
pub mod settings;
pub mod signature;
pub mod webhook;
