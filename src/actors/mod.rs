//! The actix shell around the pure routing core.
//!
//! - [`router`]: the [`router::RouterActor`] drives the core (one per server).
//! - [`conversation`]: one [`conversation::ConversationActor`] per live
//!   conversation (transcript, relays, connector notices).
//! - [`agent`]: one [`agent::AgentActor`] per logged-in agent (desktop
//!   session, offers with context, presence pushes).
//! - [`hub`]: the registry of addresses and sessions, and supervision.
//! - [`outbox`]: a session's queue of outbound frames and its close reason.
//! - [`notices`]: frames that report a change, held until the change is
//!   durable.
//! - [`reply_slot`]: where the router leaves a session's reply, waking it
//!   only when the journal's watermark will not.
//!
//! Actors translate messages into core calls and core decisions into
//! messages; they never decide routing themselves and never block on I/O.
//! Messages are small named structs: commands imperative, notifications past
//! tense.

pub mod agent;
pub mod conversation;
pub mod hub;
pub mod notices;
pub mod outbox;
pub mod reply_slot;
pub mod router;

pub use hub::{Hub, InjectPanic, SessionHandle};
pub use notices::HeldNotices;
pub use outbox::Outbox;
