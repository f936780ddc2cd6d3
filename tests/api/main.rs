//! The one integration-test binary (one binary links faster and runs in one
//! process on a 2-core machine). Each module starts its own servers on port 0.

mod errors;
mod helpers;
mod lifecycle;
mod pipelining;
mod prometheus;
mod routing;
mod security;
mod shutdown;
mod sla;
mod slow_consumer;
mod supervision;
mod transport;
