//! The edge: the wire contract and its WebSocket and REST endpoints.
//!
//! - [`protocol`]: every frame as a serde type, the error codes.
//! - [`upgrade`]: WebSocket upgrades, taken from the HTTP server with their socket.
//! - [`transport`]: one WebSocket connection, holding no buffer while idle.
//! - [`ws`]: `GET /v1/ws`, one session loop per connection.
//! - [`http`]: the REST read API, health, `/metrics`, admin fault injection.
//! - [`auth`]: bearer tokens → principal, checked before any upgrade.
//! - [`error`]: [`error::ApiError`], the REST error body.
//! - [`echo`]: the bare echo endpoint of the load generator (mounted on demand).
//!
//! Nothing here decides routing: handlers parse, authorize and hand over to
//! the actors, or read the state store.

pub mod auth;
pub mod echo;
pub mod error;
pub mod http;
pub mod protocol;
pub mod transport;
pub mod upgrade;
pub mod ws;
