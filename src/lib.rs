//! # Switchboard
//!
//! A real-time contact-center routing engine. Gateways and agent desktops
//! talk to it over WebSocket; it decides which agent gets which customer
//! conversation and keeps a conversation's context across channels.
//!
//! # Layout
//! - [`routing`] — the pure routing core (sans-I/O: time is an argument).
//! - [`durability`] — journal (group commit), snapshots (from a replica), restore at start.
pub mod actors;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod durability;
pub mod metrics;
pub mod routing;
pub mod server;
pub mod store;
