//! maur on GitLab: settings, the REST client, webhook decisions and the forge.

pub mod client;
pub mod forge;
pub mod hook;
pub mod settings;
pub mod webhook;
