//! The store as plain data: what a snapshot holds of it.
//!
//! [`Store::records`] copies the maps (cheap: names are shared and each
//! transcript is one blob); [`StoreImage::from_records`] puts the copy in
//! order, off the actor threads. `codec` encodes an image into a snapshot
//! and rebuilds a store from one; [`StoreImage::into_store`] rebuilds one
//! from plain data (format-1 snapshots, tests). It must never touch actors,
//! the routing core or files.

use super::{AgentRecord, ConversationRecord, Store};

use dashmap::DashMap;

/// Every conversation (oldest first) and every agent (by id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreImage {
    pub conversations: Vec<ConversationRecord>,
    pub agents: Vec<AgentRecord>,
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
            conversations: self
                .conversations
                .iter()
                .filter_map(|r| self.read_slot(*r.key(), r.value(), ConversationRecord::clone))
                .collect(),
            agents: self.agents.iter().map(|r| r.clone()).collect(),
        }
    }

    /// An empty store with room for this many conversations and agents.
    pub fn with_capacity(conversations: usize, agents: usize) -> Store {
        Store {
            conversations: DashMap::with_capacity_and_hasher(conversations, Default::default()),
            customers: DashMap::default(),
            agents: DashMap::with_capacity_and_hasher(agents, Default::default()),
            names: Default::default(),
            packed: Default::default(),
            packed_keys: Default::default(),
        }
    }

    /// Number of conversations held, ended ones included.
    pub fn conversation_count(&self) -> usize {
        self.conversations.len()
    }
}

impl StoreImage {
    /// Puts a copy of the maps in order: conversations oldest first, agents by id.
    pub fn from_records(records: StoreRecords) -> StoreImage {
        let mut conversations = records.conversations;
        conversations.sort_unstable_by_key(|c| c.key);
        let mut agents = records.agents;
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        StoreImage {
            conversations,
            agents,
        }
    }

    /// Rebuilds a store on this thread (customers link their conversations
    /// oldest first). A restart uses `codec::StoreBuilder` instead.
    pub fn into_store(self) -> Store {
        let store = Store::with_capacity(self.conversations.len(), self.agents.len());
        for mut c in self.conversations {
            for name in [&mut c.channel, &mut c.queue, &mut c.owner] {
                *name = store.name(name);
            }
            store.insert_conversation(c);
        }
        for a in self.agents {
            store.agents.insert(a.id.clone(), a);
        }
        store
    }
}
