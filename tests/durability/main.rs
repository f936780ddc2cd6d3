//! Durability tests: snapshot and journal files (round trip, damaged
//! snapshot fallback, torn journal tail, replay = live), and the real binary
//! killed with SIGKILL under traffic and restarted on the same data dir.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod crash;
mod files;
mod measure;
