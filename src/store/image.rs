//! The store as plain, serializable data: what a snapshot file holds of it.
//!
//! [`Store::records`] copies the maps (the only part done while routing is
//! paused for a consistent cut); [`StoreImage::from_records`] turns the copy
//! into owned, bincode-friendly data off the actor threads, and
//! [`StoreImage::into_store`] rebuilds a store. It must never touch actors,
//! the routing core or files.

use super::{AgentRecord, ConversationRecord, ConversationState, Store};
use crate::api::protocol::TranscriptLine;
use crate::routing::{AgentStatus, ConversationId, Millis};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One conversation record with owned strings (attributes as JSON text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredConversation {
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

/// One agent record with owned strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAgent {
    pub id: String,
    pub name: Option<String>,
    pub status: AgentStatus,
    pub skills: BTreeMap<String, u8>,
    pub capacity: BTreeMap<String, u8>,
    pub max_total: Option<u8>,
    pub conversations: Vec<String>,
    pub offers: BTreeMap<String, String>,
    pub connected: bool,
    pub logged_in_at_ms: Millis,
}

/// Every conversation (oldest first) and every agent (by id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreImage {
    pub conversations: Vec<StoredConversation>,
    pub agents: Vec<StoredAgent>,
}

/// A plain copy of the maps, taken at a consistent cut.
#[derive(Debug, Clone, Default)]
pub struct StoreRecords {
    pub conversations: Vec<ConversationRecord>,
    pub agents: Vec<AgentRecord>,
}

impl Store {
    /// Copies every record (unordered; [`StoreImage::from_records`] sorts).
    pub fn records(&self) -> StoreRecords {
        StoreRecords {
            conversations: self.conversations.iter().map(|r| r.clone()).collect(),
            agents: self.agents.iter().map(|r| r.clone()).collect(),
        }
    }

    /// An empty store with room for this many conversations and agents.
    pub fn with_capacity(conversations: usize, agents: usize) -> Store {
        Store {
            conversations: DashMap::with_capacity(conversations),
            customers: DashMap::new(),
            agents: DashMap::with_capacity(agents),
        }
    }

    /// Number of conversations held, ended ones included.
    pub fn conversation_count(&self) -> usize {
        self.conversations.len()
    }
}

impl StoreImage {
    /// Converts a copy of the maps into owned data, conversations oldest first.
    pub fn from_records(records: StoreRecords) -> StoreImage {
        let mut conversations: Vec<StoredConversation> = records
            .conversations
            .into_iter()
            .map(|r| StoredConversation {
                key: r.key,
                customer_id: r.customer_id,
                channel: r.channel,
                queue: r.queue,
                priority: r.priority,
                state: r.state,
                agent_id: r.agent_id,
                offer_id: r.offer_id,
                transcript: r.transcript,
                attributes_json: Value::Object(r.attributes).to_string(),
                previous_channels: r.previous_channels,
                previous_agent_id: r.previous_agent_id,
                outcome: r.outcome.map(str::to_string),
                opened_at_ms: r.opened_at_ms,
                assigned_at_ms: r.assigned_at_ms,
                ended_at_ms: r.ended_at_ms,
                agent_replied: r.agent_replied,
                owner: r.owner,
            })
            .collect();
        conversations.sort_unstable_by_key(|c| c.key);
        let mut agents: Vec<StoredAgent> = records
            .agents
            .into_iter()
            .map(|a| StoredAgent {
                status: status_of(a.status),
                id: a.id,
                name: a.name,
                skills: a.skills,
                capacity: a.capacity,
                max_total: a.max_total,
                conversations: a.conversations,
                offers: a.offers,
                connected: a.connected,
                logged_in_at_ms: a.logged_in_at_ms,
            })
            .collect();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        StoreImage {
            conversations,
            agents,
        }
    }

    /// Rebuilds a store (customers link their conversations oldest first).
    /// Conversations are inserted by `threads` threads at once (the maps are
    /// concurrent), then each customer's list is put back in id order.
    pub fn into_store(self, threads: usize) -> Store {
        let store = Store::with_capacity(self.conversations.len(), self.agents.len());
        let mut rest = self.conversations;
        let per = rest.len().div_ceil(threads.max(1)).max(1);
        let mut chunks = Vec::new();
        while rest.len() > per {
            let tail = rest.split_off(rest.len() - per);
            chunks.push(tail);
        }
        std::thread::scope(|scope| {
            for chunk in chunks {
                let store = &store;
                scope.spawn(move || insert_all(store, chunk));
            }
            insert_all(&store, rest);
        });
        if threads > 1 {
            store
                .customers
                .iter_mut()
                .for_each(|mut ids| ids.sort_unstable());
        }
        for a in self.agents {
            store.agents.insert(
                a.id.clone(),
                AgentRecord {
                    id: a.id,
                    name: a.name,
                    status: a.status.as_str(),
                    skills: a.skills,
                    capacity: a.capacity,
                    max_total: a.max_total,
                    conversations: a.conversations,
                    offers: a.offers,
                    connected: a.connected,
                    logged_in_at_ms: a.logged_in_at_ms,
                },
            );
        }
        store
    }
}

fn insert_all(store: &Store, conversations: Vec<StoredConversation>) {
    for c in conversations {
        let attributes = match serde_json::from_str::<Map<String, Value>>(&c.attributes_json) {
            Ok(map) => map,
            Err(e) => {
                tracing::warn!(conversation = %c.key, error = %e, "stored attributes are not a JSON object; dropped");
                Map::new()
            }
        };
        store.insert_conversation(ConversationRecord {
            id: c.key.to_string(),
            key: c.key,
            customer_id: c.customer_id,
            channel: c.channel,
            queue: c.queue,
            priority: c.priority,
            state: c.state,
            agent_id: c.agent_id,
            offer_id: c.offer_id,
            transcript: c.transcript,
            attributes,
            previous_channels: c.previous_channels,
            previous_agent_id: c.previous_agent_id,
            outcome: c.outcome.as_deref().and_then(outcome_of),
            opened_at_ms: c.opened_at_ms,
            assigned_at_ms: c.assigned_at_ms,
            ended_at_ms: c.ended_at_ms,
            agent_replied: c.agent_replied,
            owner: c.owner,
        });
    }
}

fn status_of(status: &str) -> AgentStatus {
    AgentStatus::ALL
        .into_iter()
        .find(|s| s.as_str() == status)
        .unwrap_or(AgentStatus::Offline)
}

fn outcome_of(outcome: &str) -> Option<&'static str> {
    ["completed", "abandoned"]
        .into_iter()
        .find(|o| *o == outcome)
}
