//! Commands into the routing core, their replies, and why one can be refused.

use super::ids::{AgentId, ConversationId, OfferId};
use serde::{Deserialize, Serialize};

/// Presence an agent can put itself in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Takes offers on every channel with a free slot.
    Available,
    /// Logged in but takes no new offers.
    Away,
    /// Logged out or disconnected.
    Offline,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Available => "available",
            AgentStatus::Away => "away",
            AgentStatus::Offline => "offline",
        }
    }
    pub const ALL: [AgentStatus; 3] = [
        AgentStatus::Available,
        AgentStatus::Away,
        AgentStatus::Offline,
    ];
}

/// Where a transfer sends a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferTarget {
    /// Back into routing, in this queue (at the back of the line).
    Queue(String),
    /// To this agent first, for the preferred-agent window, then the current queue.
    Agent(AgentId),
}

/// Everything that can happen to the routing core from outside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// An agent logs in (or logs in again, replacing skills and capacity; its
    /// conversations stay). It becomes `available`.
    AgentLogin {
        agent: AgentId,
        /// Skill name and level 1..=10.
        skills: Vec<(String, u8)>,
        /// Slots per channel name; `None` gives every channel its default.
        capacity: Option<Vec<(String, u8)>>,
        /// Optional cap on all channels together (e.g. 1 makes voice exclusive).
        max_total: Option<u8>,
    },
    /// An agent sets its own presence.
    AgentSetStatus { agent: AgentId, status: AgentStatus },
    /// The agent's connection dropped: its offers are re-routed now, its
    /// conversations are kept for the reconnect grace period.
    AgentDisconnected { agent: AgentId },
    /// A customer conversation arrives.
    Open {
        channel: String,
        queue: Option<String>,
        skills: Vec<(String, u8)>,
        priority: Option<i32>,
        preferred_agent: Option<AgentId>,
    },
    /// An agent accepts its offer.
    Accept { agent: AgentId, offer: OfferId },
    /// An agent declines its offer.
    Reject { agent: AgentId, offer: OfferId },
    /// The assigned agent finished the conversation.
    Complete {
        agent: AgentId,
        conversation: ConversationId,
    },
    /// The assigned agent sent its first (or any) message: stops the first-response clock.
    AgentMessage {
        agent: AgentId,
        conversation: ConversationId,
    },
    /// The customer left before being answered.
    Abandon { conversation: ConversationId },
    /// The connector ended the conversation (abandon if unanswered, else the agent wraps up).
    Close { conversation: ConversationId },
    /// The assigned agent hands the conversation on.
    Transfer {
        agent: AgentId,
        conversation: ConversationId,
        target: TransferTarget,
    },
    /// The customer moves to another channel: same conversation, previous agent first.
    SwitchChannel {
        conversation: ConversationId,
        channel: String,
    },
}

impl Command {
    /// A short stable name, used as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::AgentLogin { .. } => "agent_login",
            Command::AgentSetStatus { .. } => "agent_status",
            Command::AgentDisconnected { .. } => "agent_disconnected",
            Command::Open { .. } => "open",
            Command::Accept { .. } => "accept",
            Command::Reject { .. } => "reject",
            Command::Complete { .. } => "complete",
            Command::AgentMessage { .. } => "agent_message",
            Command::Abandon { .. } => "abandon",
            Command::Close { .. } => "close",
            Command::Transfer { .. } => "transfer",
            Command::SwitchChannel { .. } => "switch_channel",
        }
    }
}

/// What a successful command returns to its caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Done,
    /// The id given to a newly opened conversation.
    Opened(ConversationId),
}

/// Why the core refused a command. Nothing changed when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unknown agent `{0}`")]
    UnknownAgent(String),
    #[error("unknown conversation `{0}`")]
    UnknownConversation(ConversationId),
    #[error("unknown offer `{0}`")]
    UnknownOffer(OfferId),
    #[error("unknown channel `{0}`")]
    UnknownChannel(String),
    #[error("unknown queue `{0}`")]
    UnknownQueue(String),
    #[error("skill level {level} of `{skill}` is outside 1..=10")]
    BadSkillLevel { skill: String, level: u8 },
    #[error("offer `{0}` belongs to another agent")]
    NotYourOffer(OfferId),
    #[error("conversation `{0}` is not assigned to this agent")]
    NotYourConversation(ConversationId),
    #[error("conversation `{conversation}` is {state}, which does not allow this")]
    InvalidState {
        conversation: ConversationId,
        state: &'static str,
    },
    #[error("agent `{0}` is not logged in")]
    AgentNotLoggedIn(String),
    #[error("conversation is already on channel `{0}`")]
    SameChannel(String),
    #[error("queue `{queue}` does not serve channel `{channel}`")]
    ChannelNotServed { queue: String, channel: String },
    #[error("too many skills (at most {0})")]
    TooManySkills(usize),
}

impl CommandError {
    /// Every code [`CommandError::code`] gives (error frames list them all,
    /// and the error metric starts each at zero).
    pub const CODES: &'static [&'static str] = &[
        "unknown_agent",
        "unknown_conversation",
        "unknown_offer",
        "unknown_channel",
        "unknown_queue",
        "bad_skill_level",
        "forbidden",
        "invalid_state",
        "not_logged_in",
        "too_many_skills",
        "wrong_channel",
    ];

    /// A stable code for error frames and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::UnknownAgent(_) => "unknown_agent",
            CommandError::UnknownConversation(_) => "unknown_conversation",
            CommandError::UnknownOffer(_) => "unknown_offer",
            CommandError::UnknownChannel(_) => "unknown_channel",
            CommandError::UnknownQueue(_) => "unknown_queue",
            CommandError::BadSkillLevel { .. } => "bad_skill_level",
            CommandError::NotYourOffer(_) => "forbidden",
            CommandError::NotYourConversation(_) => "forbidden",
            CommandError::InvalidState { .. } => "invalid_state",
            CommandError::AgentNotLoggedIn(_) => "not_logged_in",
            CommandError::SameChannel(_) => "invalid_state",
            CommandError::TooManySkills(_) => "too_many_skills",
            CommandError::ChannelNotServed { .. } => "wrong_channel",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed() {
        let conversation = ConversationId(1);
        let offer = OfferId(1);
        let all = [
            CommandError::UnknownAgent("a".into()),
            CommandError::UnknownConversation(conversation),
            CommandError::UnknownOffer(offer),
            CommandError::UnknownChannel("fax".into()),
            CommandError::UnknownQueue("q".into()),
            CommandError::BadSkillLevel {
                skill: "s".into(),
                level: 11,
            },
            CommandError::NotYourOffer(offer),
            CommandError::NotYourConversation(conversation),
            CommandError::InvalidState {
                conversation,
                state: "ended",
            },
            CommandError::AgentNotLoggedIn("a".into()),
            CommandError::SameChannel("chat".into()),
            CommandError::ChannelNotServed {
                queue: "q".into(),
                channel: "voice".into(),
            },
            CommandError::TooManySkills(65),
        ];
        for e in &all {
            assert!(CommandError::CODES.contains(&e.code()), "{e:?}");
        }
        for code in CommandError::CODES {
            assert!(all.iter().any(|e| e.code() == *code), "{code} unused");
        }
    }
}
