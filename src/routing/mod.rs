//! The pure routing core: skills-based matching of conversations to agents.
//!
//! Sans-I/O, in the shape of quinn-proto: [`Engine::handle`] and
//! [`Engine::handle_timeout`] take the current time as an argument,
//! [`Engine::poll_effect`] yields decisions and [`Engine::poll_timeout`] says
//! when to call back. It must never use actix, tokio, I/O, threads or a clock,
//! so it is deterministic (given its seed), unit-testable and benchable.
//!
//! Layout: `settings` (what it is configured with), `command`/`effect` (what
//! goes in and out), `state` (records), `skills` (interning and matching),
//! `groups` (the indexes that make a decision cost independent of the number
//! of agents), `timers` (the one deadline index), `engine` (the rules),
//! `snapshot` (plain-data state and restore).
pub mod command;
pub mod effect;
pub mod engine;
pub mod groups;
pub mod ids;
pub mod settings;
pub mod skills;
pub mod snapshot;
pub mod state;
pub mod timers;

#[cfg(test)]
mod tests;

pub use command::*;
pub use effect::*;
pub use engine::{Engine, FloorStats, QueueStats};
pub use ids::*;
pub use settings::*;
pub use snapshot::{CoreSnapshot, RestoreError, SNAPSHOT_VERSION};
