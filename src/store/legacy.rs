//! The store as format-1 snapshots held it (bincode 1 of records with owned
//! strings and attributes as JSON text). Read only: a data directory written
//! by an older build is migrated on its first start, and its next snapshot
//! is written in the current format. Must never be used to write.

use super::compact::{Attributes, Transcript};
use super::image::StoreImage;
use super::{AgentRecord, ConversationRecord, ConversationState, Name};
use crate::api::protocol::TranscriptLine;
use crate::routing::{ConversationId, Millis};
use serde::Deserialize;

/// One conversation record of format 1.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct StoredConversationV1 {
    pub key: ConversationId,
    pub customer_id: String,
    pub channel: String,
    pub queue: String,
    pub priority: i32,
    pub state: ConversationState,
    pub agent_id: Option<String>,
    pub offer_id: Option<String>,
    pub transcript: Vec<TranscriptLine>,
    pub attributes_json: String,
    pub previous_channels: Vec<String>,
    pub previous_agent_id: Option<String>,
    pub outcome: Option<String>,
    pub opened_at_ms: Millis,
    pub assigned_at_ms: Option<Millis>,
    pub ended_at_ms: Option<Millis>,
    pub agent_replied: bool,
    pub owner: String,
}

/// The store image of format 1.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct StoreImageV1 {
    pub conversations: Vec<StoredConversationV1>,
    pub agents: Vec<AgentRecord>,
}

impl From<StoreImageV1> for StoreImage {
    fn from(v1: StoreImageV1) -> StoreImage {
        let conversations = v1
            .conversations
            .into_iter()
            .map(|c| ConversationRecord {
                key: c.key,
                customer_id: Name::from(c.customer_id),
                channel: Name::from(c.channel),
                queue: Name::from(c.queue),
                priority: c.priority,
                state: c.state,
                agent_id: c.agent_id.map(Name::from),
                offer_id: c.offer_id,
                transcript: c.transcript.into_iter().collect::<Transcript>(),
                attributes: Attributes::from_json(&c.attributes_json),
                previous_channels: c.previous_channels.into_iter().map(Name::from).collect(),
                previous_agent_id: c.previous_agent_id.map(Name::from),
                outcome: match c.outcome.as_deref() {
                    Some("completed") => Some("completed"),
                    Some("abandoned") => Some("abandoned"),
                    _ => None,
                },
                opened_at_ms: c.opened_at_ms,
                assigned_at_ms: c.assigned_at_ms,
                ended_at_ms: c.ended_at_ms,
                agent_replied: c.agent_replied,
                owner: Name::from(c.owner),
            })
            .collect();
        StoreImage {
            conversations,
            agents: v1.agents,
        }
    }
}
