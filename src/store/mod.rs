//! The shared state store: conversations, customers and agents in `DashMap`s.
//!
//! The router writes it (the routing fields, offers, and a conversation's
//! attributes when it opens), each conversation actor appends its transcript
//! lines; REST handlers read it without asking any actor, and supervision
//! rebuilds a crashed actor from it. Snapshots are written from the
//! replica's own copy (`crate::durability::replica`), never from this one. It holds plain data only: it must never
//! call into actors or the routing core, and never hold a map guard across an
//! `.await` or while touching another map.
//!
//! `apply` holds the store-writing half of the router (shared with journal
//! replay); `compact` the field types that keep a record to a few
//! allocations; `image` the store as plain data; `codec` its binary form in
//! a snapshot and the parallel rebuild from it; `legacy` the format-1 form,
//! read to migrate.
//!
//! After a restart a conversation may still be `Slot::Packed`: its bytes
//! in the mapped snapshot, checked but not decoded. Every accessor here
//! decodes such a record on use (a write keeps the decoded copy), and
//! [`Store::unpack_some`] decodes the rest in the background; nothing
//! outside this module sees the difference.

pub mod apply;
pub mod codec;
pub mod compact;
pub mod image;
pub mod legacy;

pub use apply::{apply_command, apply_effect, apply_fact, outcome_str, Fact, Released};
pub use codec::PackedSection;
pub use compact::{Attributes, Name, Names, Transcript};
pub use image::{StoreImage, StoreRecords};

use crate::api::protocol::{HistoryEntry, OfferContext, Speaker, TranscriptLine};
use crate::routing::{AgentStatus, ConversationId, Millis};
use codec::RecordView;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError, RwLock};

/// Where a conversation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    /// In a queue, no offer out.
    Waiting,
    /// Offered to an agent, not yet accepted.
    Offered,
    /// Accepted by an agent.
    Assigned,
    /// Left routing for good.
    Ended,
}

impl ConversationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationState::Waiting => "waiting",
            ConversationState::Offered => "offered",
            ConversationState::Assigned => "assigned",
            ConversationState::Ended => "ended",
        }
    }
}

/// One conversation as clients and the REST API see it. Cheap to clone:
/// names are shared, the transcript and the attributes are one blob each.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationRecord {
    /// Shown as `id`: `c-<n>`.
    #[serde(rename = "id", serialize_with = "wire_id")]
    pub key: ConversationId,
    /// Shared with the customer index.
    pub customer_id: Name,
    pub channel: Name,
    pub queue: Name,
    pub priority: i32,
    pub state: ConversationState,
    pub agent_id: Option<Name>,
    /// The open offer (`o-<n>`), if any.
    pub offer_id: Option<String>,
    pub transcript: Transcript,
    pub attributes: Attributes,
    pub previous_channels: Vec<Name>,
    pub previous_agent_id: Option<Name>,
    /// `completed` or `abandoned` once ended.
    pub outcome: Option<&'static str>,
    pub opened_at_ms: Millis,
    pub assigned_at_ms: Option<Millis>,
    pub ended_at_ms: Option<Millis>,
    /// Set once the assigned agent has written (first-response SLA).
    pub agent_replied: bool,
    /// The principal (token name) of the connector that opened it; only it may act on it.
    #[serde(skip)]
    pub owner: Name,
}

fn wire_id<S: serde::Serializer>(key: &ConversationId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(key)
}

impl ConversationRecord {
    /// A new conversation just opened on `channel` in `queue`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: ConversationId,
        customer_id: Name,
        channel: Name,
        queue: Name,
        priority: i32,
        attributes: Attributes,
        owner: Name,
        now: Millis,
    ) -> Self {
        ConversationRecord {
            key,
            customer_id,
            channel,
            queue,
            priority,
            state: ConversationState::Waiting,
            agent_id: None,
            offer_id: None,
            transcript: Transcript::default(),
            attributes,
            previous_channels: Vec::new(),
            previous_agent_id: None,
            outcome: None,
            opened_at_ms: now,
            assigned_at_ms: None,
            ended_at_ms: None,
            agent_replied: false,
            owner,
        }
    }

    /// The wire id, `c-<n>`.
    pub fn id(&self) -> String {
        self.key.to_string()
    }
}

/// One agent as the REST API sees it (and as snapshots store it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: String,
    pub name: Option<String>,
    /// `available`, `away` or `offline` on the wire.
    pub status: AgentStatus,
    pub skills: BTreeMap<String, u8>,
    pub capacity: BTreeMap<String, u8>,
    pub max_total: Option<u8>,
    /// Conversations assigned to the agent (`c-<n>`).
    pub conversations: Vec<String>,
    /// Offers out to the agent: offer id → conversation id.
    pub offers: BTreeMap<String, String>,
    /// Whether a desktop is connected as this agent.
    pub connected: bool,
    pub logged_in_at_ms: Millis,
}

type Hasher = ahash::RandomState;

/// A conversation in the map.
#[derive(Debug)]
pub(crate) enum Slot {
    /// Boxed: the table stays small (a restart fills it at random places)
    /// and the records lie in allocation order.
    Record(Box<ConversationRecord>),
    /// Still in the snapshot a restart read: its offset in the store
    /// section ([`Store::packed`]), checked then, decoded on first use.
    Packed(u64),
}

/// The three maps and the names they share. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Store {
    conversations: DashMap<ConversationId, Slot, Hasher>,
    customers: DashMap<Name, Vec<ConversationId>, Hasher>,
    agents: DashMap<String, AgentRecord, Hasher>,
    names: Names,
    /// The snapshot section packed records point into; dropped once
    /// [`Store::unpack_some`] has decoded them all.
    packed: RwLock<Option<PackedSection>>,
    /// The keys a restart left packed, for [`Store::unpack_some`].
    packed_keys: Mutex<Vec<ConversationId>>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared copy of a channel, queue, connector or agent name.
    pub fn name(&self, name: &str) -> Name {
        self.names.get(name)
    }

    /// The packed section, if a restart left records in it.
    fn packed(&self) -> Option<PackedSection> {
        self.packed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_packed(&self, section: PackedSection) {
        *self.packed.write().unwrap_or_else(PoisonError::into_inner) = Some(section);
    }

    pub(crate) fn add_packed_keys(&self, keys: Vec<ConversationId>) {
        self.packed_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(keys);
    }

    /// The state and end time of a slot, without decoding a packed one.
    fn state_of(
        slot: &Slot,
        section: Option<&PackedSection>,
    ) -> Option<(ConversationState, Option<Millis>)> {
        match slot {
            Slot::Record(r) => Some((r.state, r.ended_at_ms)),
            Slot::Packed(at) => {
                let view = RecordView::at(section?.section(), *at).ok()?;
                Some((view.state, view.ended_at_ms))
            }
        }
    }

    /// Decodes a packed record (checked when the restart left it packed, so
    /// a failure here is a bug: logged, and the record reads as missing).
    fn unpack(&self, key: ConversationId, at: u64) -> Option<ConversationRecord> {
        let section = self.packed()?;
        let decoded = match RecordView::at(section.section(), at) {
            Ok(view) => {
                Some(view.to_record(Name::from(view.customer()), &mut |n| self.names.get(n)))
            }
            Err(e) => {
                tracing::error!(conversation = %key, error = %e, "a packed conversation record does not decode");
                None
            }
        };
        decoded
    }

    /// A slot's record, decoded if packed.
    fn read_slot<R>(
        &self,
        key: ConversationId,
        slot: &Slot,
        f: impl FnOnce(&ConversationRecord) -> R,
    ) -> Option<R> {
        match slot {
            Slot::Record(r) => Some(f(r)),
            Slot::Packed(at) => self.unpack(key, *at).map(|r| f(&r)),
        }
    }

    /// Decodes up to `batch` of the records a restart left packed (the
    /// server does this in the background after it is ready); returns how
    /// many are left. With none left, the snapshot's bytes are let go.
    pub fn unpack_some(&self, batch: usize) -> usize {
        let keys: Vec<ConversationId> = {
            let mut keys = self
                .packed_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let from = keys.len().saturating_sub(batch);
            keys.drain(from..).collect()
        };
        for key in keys {
            if let Some(mut slot) = self.conversations.get_mut(&key) {
                if let Slot::Packed(at) = *slot {
                    if let Some(record) = self.unpack(key, at) {
                        *slot = Slot::Record(Box::new(record));
                    }
                }
            }
        }
        let left = self
            .packed_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        if left == 0 {
            self.packed
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
        left
    }

    /// Ended conversations whose end is at or before `cutoff`.
    pub fn ended_before(&self, cutoff: Millis) -> Vec<ConversationId> {
        let section = self.packed();
        self.conversations
            .iter()
            .filter(|r| {
                Self::state_of(r.value(), section.as_ref()).is_some_and(|(state, ended)| {
                    state == ConversationState::Ended && ended.is_some_and(|t| t <= cutoff)
                })
            })
            .map(|r| *r.key())
            .collect()
    }

    /// Forgets a conversation: its record and its place in the customer's list.
    pub fn remove_conversation(&self, id: ConversationId) {
        let Some((_, slot)) = self.conversations.remove(&id) else {
            return;
        };
        let customer: Name = match slot {
            Slot::Record(r) => r.customer_id,
            Slot::Packed(at) => {
                let section = self.packed();
                let view = section
                    .as_ref()
                    .and_then(|s| RecordView::at(s.section(), at).ok());
                match view {
                    Some(view) => Name::from(view.customer()),
                    None => return,
                }
            }
        };
        let emptied = self
            .customers
            .get_mut(&customer)
            .map(|mut ids| {
                ids.retain(|c| *c != id);
                ids.is_empty()
            })
            .unwrap_or(false);
        if emptied {
            self.customers.remove_if(&customer, |_, ids| ids.is_empty());
        }
    }

    /// Adds a new conversation and links it to its customer.
    pub fn insert_conversation(&self, mut record: ConversationRecord) {
        record.customer_id = self.link_customer(&record.customer_id, record.key);
        self.conversations
            .insert(record.key, Slot::Record(Box::new(record)));
    }

    /// Appends `conversation` to the customer's list; returns the customer
    /// id as the index holds it (so every record of a customer shares it).
    fn link_customer(&self, customer_id: &str, conversation: ConversationId) -> Name {
        if let Some(mut ids) = self.customers.get_mut(customer_id) {
            ids.push(conversation);
            return Name::clone(ids.key());
        }
        let mut ids = self.customers.entry(Name::from(customer_id)).or_default();
        ids.push(conversation);
        Name::clone(ids.key())
    }

    /// Adds customers' conversation lists (a restore thread's share); lists
    /// are left unsorted.
    pub(crate) fn merge_customers(&self, lists: impl Iterator<Item = (Name, Vec<ConversationId>)>) {
        for (name, ids) in lists {
            self.customers.entry(name).or_default().extend(ids);
        }
    }

    /// A copy of one conversation.
    pub fn conversation(&self, id: ConversationId) -> Option<ConversationRecord> {
        self.read_conversation(id, ConversationRecord::clone)
    }

    /// `f` of one conversation, read in place (no copy of its transcript);
    /// `None` if it is unknown.
    pub fn read_conversation<R>(
        &self,
        id: ConversationId,
        f: impl FnOnce(&ConversationRecord) -> R,
    ) -> Option<R> {
        let slot = self.conversations.get(&id)?;
        match slot.value() {
            Slot::Record(r) => Some(f(r)),
            Slot::Packed(at) => self.unpack(id, *at).map(|r| f(&r)),
        }
    }

    /// Runs `f` on one conversation under its lock; `None` if it is unknown.
    pub fn update_conversation<R>(
        &self,
        id: ConversationId,
        f: impl FnOnce(&mut ConversationRecord) -> R,
    ) -> Option<R> {
        let mut slot = self.conversations.get_mut(&id)?;
        if let Slot::Packed(at) = *slot {
            *slot = Slot::Record(Box::new(self.unpack(id, at)?));
        }
        match &mut *slot {
            Slot::Record(r) => Some(f(r)),
            Slot::Packed(_) => None,
        }
    }

    /// Appends one transcript line.
    pub fn append_line(
        &self,
        id: ConversationId,
        from: Speaker,
        text: String,
        at_ms: Millis,
    ) -> Option<TranscriptLine> {
        self.update_conversation(id, |r| {
            r.transcript.push(from, at_ms, &r.channel, &text);
            TranscriptLine {
                from,
                text,
                at_ms,
                channel: r.channel.to_string(),
            }
        })
    }

    /// Every conversation of a customer, oldest first, with transcripts.
    pub fn customer_conversations(&self, customer_id: &str) -> Vec<ConversationRecord> {
        let ids: Vec<ConversationId> = self
            .customers
            .get(customer_id)
            .map(|v| v.clone())
            .unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| self.conversation(id))
            .collect()
    }

    /// Number of live (not ended) conversations.
    pub fn live_conversations(&self) -> usize {
        let section = self.packed();
        self.conversations
            .iter()
            .filter(|r| Self::is_live(r.value(), section.as_ref()))
            .count()
    }

    fn is_live(slot: &Slot, section: Option<&PackedSection>) -> bool {
        Self::state_of(slot, section).is_some_and(|(state, _)| state != ConversationState::Ended)
    }

    /// The context that goes with an offer of conversation `id`.
    pub fn offer_context(&self, id: ConversationId) -> Option<(ConversationRecord, OfferContext)> {
        let record = self.conversation(id)?;
        let others: Vec<ConversationId> = self
            .customers
            .get(&*record.customer_id)
            .map(|ids| ids.iter().copied().filter(|c| *c != id).collect())
            .unwrap_or_default();
        let customer_history = others
            .into_iter()
            .filter_map(|other| {
                let slot = self.conversations.get(&other)?;
                self.read_slot(other, &slot, |other| HistoryEntry {
                    conversation_id: other.id(),
                    channel: other.channel.to_string(),
                    state: other.state.as_str().to_string(),
                    opened_at: other.opened_at_ms,
                })
            })
            .collect();
        let context = OfferContext {
            transcript: record.transcript.to_lines(),
            attributes: record.attributes.to_map(),
            previous_channels: record
                .previous_channels
                .iter()
                .map(|c| c.to_string())
                .collect(),
            previous_agent_id: record.previous_agent_id.as_deref().map(str::to_string),
            customer_history,
        };
        Some((record, context))
    }

    /// Adds or replaces an agent (a login keeps its conversations and offers).
    pub fn upsert_agent(&self, mut record: AgentRecord) {
        if let Some(old) = self.agents.get(&record.id) {
            record.conversations = old.conversations.clone();
            record.offers = old.offers.clone();
        }
        self.agents.insert(record.id.clone(), record);
    }

    /// A copy of one agent.
    pub fn agent(&self, id: &str) -> Option<AgentRecord> {
        self.agents.get(id).map(|r| r.clone())
    }

    /// Runs `f` on one agent under its lock; `None` if it is unknown.
    pub fn update_agent<R>(&self, id: &str, f: impl FnOnce(&mut AgentRecord) -> R) -> Option<R> {
        self.agents.get_mut(id).map(|mut r| f(&mut r))
    }

    /// Every agent, sorted by id.
    pub fn agents(&self) -> Vec<AgentRecord> {
        let mut all: Vec<AgentRecord> = self.agents.iter().map(|r| r.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn conv(n: u64, customer: &str, channel: &str) -> ConversationRecord {
        ConversationRecord::new(
            ConversationId(n),
            customer.into(),
            channel.into(),
            "general".into(),
            0,
            Attributes::default(),
            "gw".into(),
            1_000 + n,
        )
    }

    #[test]
    fn evicting_an_ended_conversation_forgets_it_and_its_place_in_the_customer_view() {
        let store = Store::new();
        store.insert_conversation(conv(1, "cu", "chat"));
        store.insert_conversation(conv(2, "cu", "voice"));
        store.insert_conversation(conv(3, "solo", "chat"));
        for (id, at) in [(1, 5_000), (3, 9_000)] {
            store.update_conversation(ConversationId(id), |r| {
                r.state = ConversationState::Ended;
                r.ended_at_ms = Some(at);
            });
        }
        assert_eq!(store.ended_before(4_999), vec![]);
        let mut due = store.ended_before(9_000);
        due.sort();
        assert_eq!(due, vec![ConversationId(1), ConversationId(3)]);

        apply_fact(&store, &Fact::Evicted { conversations: due });
        assert!(store.conversation(ConversationId(1)).is_none());
        let left: Vec<_> = store
            .customer_conversations("cu")
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(left, vec![ConversationId(2)], "the live one stays");
        assert!(store.customer_conversations("solo").is_empty());
        assert_eq!(store.live_conversations(), 1);
        // Evicting again (a replayed fact) changes nothing.
        apply_fact(
            &store,
            &Fact::Evicted {
                conversations: vec![ConversationId(1)],
            },
        );
        assert_eq!(store.customer_conversations("cu").len(), 1);
    }

    #[test]
    fn customer_view_spans_channels_and_context_excludes_self() {
        let store = Store::new();
        store.insert_conversation(conv(1, "cu", "chat"));
        store.insert_conversation(conv(2, "cu", "voice"));
        store.insert_conversation(conv(3, "other", "chat"));
        store
            .append_line(ConversationId(1), Speaker::Customer, "hello".into(), 5)
            .expect("known");
        let all = store.customer_conversations("cu");
        assert_eq!(
            all.iter().map(|c| c.id()).collect::<Vec<_>>(),
            ["c-1", "c-2"]
        );
        let lines = all[0].transcript.to_lines();
        assert_eq!(lines[0].text, "hello");
        assert_eq!(lines[0].channel, "chat");
        assert!(Name::ptr_eq(&all[0].customer_id, &all[1].customer_id));
        let (_, ctx) = store.offer_context(ConversationId(2)).expect("known");
        assert_eq!(ctx.customer_history.len(), 1);
        assert_eq!(ctx.customer_history[0].conversation_id, "c-1");
        assert!(store
            .append_line(ConversationId(9), Speaker::Agent, "x".into(), 1)
            .is_none());
    }

    #[test]
    fn relogin_keeps_conversations() {
        let store = Store::new();
        let agent = AgentRecord {
            id: "a".into(),
            name: None,
            status: AgentStatus::Available,
            skills: BTreeMap::new(),
            capacity: BTreeMap::new(),
            max_total: None,
            conversations: vec![],
            offers: BTreeMap::new(),
            connected: true,
            logged_in_at_ms: 1,
        };
        store.upsert_agent(agent.clone());
        store.update_agent("a", |a| a.conversations.push("c-1".into()));
        store.upsert_agent(agent);
        assert_eq!(store.agent("a").expect("known").conversations, ["c-1"]);
    }
}
