//! The store's section of a snapshot file: a binary layout that a restart
//! decodes straight into the maps, a few allocations per conversation and on
//! every core at once.
//!
//! Layout (little endian): the agents (u64 length + bincode 1 of
//! `Vec<AgentRecord>`), the number of conversations (u64), the number of
//! chunks (u32), then each chunk: its conversation count (u32), its length in
//! bytes (u64) and its records back to back. Chunks are independent, so any
//! number of threads can decode them ([`StoreBuilder::work`]). One record:
//!
//! | field | encoding |
//! | --- | --- |
//! | key | u64 |
//! | customer, channel, queue, owner | str each |
//! | priority | i32 |
//! | state | u8: waiting, offered, assigned, ended |
//! | agent, offer, previous agent | optional str each |
//! | outcome | u8: none, completed, abandoned |
//! | opened at | u64 |
//! | assigned at, ended at | optional u64 each |
//! | agent replied | u8 |
//! | previous channels | u32 count + str each |
//! | attributes | str (JSON text) |
//! | transcript | u32 length + the [`Transcript`] blob |
//!
//! A str is a u32 length and UTF-8; an optional value is a u8 tag (0 none,
//! 1 some) and the value. This module must never do file I/O or touch actors.

use super::compact::{Attributes, LocalNames, MalformedTranscript, Transcript};
use super::image::StoreImage;
use super::{AgentRecord, ConversationRecord, ConversationState, Name, Slot, Store};
use crate::routing::ConversationId;
use smallvec::SmallVec;
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};

/// Conversations per chunk: small enough to share out among threads, large
/// enough that the framing costs nothing.
const CHUNK: usize = 8192;

/// Why the store section cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the store section ends inside {what} at byte {at}")]
    Short { what: &'static str, at: usize },
    #[error("{what} at byte {at} is not valid UTF-8")]
    Utf8 { what: &'static str, at: usize },
    #[error("bad {what} value {value} at byte {at}")]
    Value {
        what: &'static str,
        value: u8,
        at: usize,
    },
    #[error("chunk {chunk} holds {found} records, its header says {expected}")]
    Count {
        chunk: usize,
        expected: u32,
        found: u32,
    },
    #[error("the store section says {expected} conversations, its chunks hold {found}")]
    Total { expected: u64, found: u64 },
    #[error("conversation {conversation}: {source}")]
    Transcript {
        conversation: ConversationId,
        source: MalformedTranscript,
    },
    #[error("the agents: {0}")]
    Agents(bincode::Error),
    #[error("{0} bytes after the last chunk")]
    Trailing(usize),
}

/// Writes the store section of `image`.
pub fn encode<W: Write>(image: &StoreImage, out: &mut W) -> io::Result<()> {
    let agents = bincode::serialize(&image.agents).map_err(io::Error::other)?;
    out.write_all(&(agents.len() as u64).to_le_bytes())?;
    out.write_all(&agents)?;
    out.write_all(&(image.conversations.len() as u64).to_le_bytes())?;
    let chunks = image.conversations.chunks(CHUNK);
    out.write_all(&(chunks.len() as u32).to_le_bytes())?;
    let mut buf = Vec::new();
    for chunk in chunks {
        buf.clear();
        for c in chunk {
            encode_record(c, &mut buf);
        }
        out.write_all(&(chunk.len() as u32).to_le_bytes())?;
        out.write_all(&(buf.len() as u64).to_le_bytes())?;
        out.write_all(&buf)?;
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn encode_record(c: &ConversationRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(&c.key.0.to_le_bytes());
    for s in [&c.customer_id, &c.channel, &c.queue, &c.owner] {
        put_str(out, s);
    }
    out.extend_from_slice(&c.priority.to_le_bytes());
    out.push(match c.state {
        ConversationState::Waiting => 0,
        ConversationState::Offered => 1,
        ConversationState::Assigned => 2,
        ConversationState::Ended => 3,
    });
    put_opt_str(out, c.agent_id.as_deref());
    put_opt_str(out, c.offer_id.as_deref());
    put_opt_str(out, c.previous_agent_id.as_deref());
    out.push(match c.outcome {
        None => 0,
        Some("completed") => 1,
        Some(_) => 2,
    });
    out.extend_from_slice(&c.opened_at_ms.to_le_bytes());
    put_opt_u64(out, c.assigned_at_ms);
    put_opt_u64(out, c.ended_at_ms);
    out.push(c.agent_replied as u8);
    out.extend_from_slice(&(c.previous_channels.len() as u32).to_le_bytes());
    for ch in &c.previous_channels {
        put_str(out, ch);
    }
    put_str(out, c.attributes.as_json());
    let t = c.transcript.as_bytes();
    out.extend_from_slice(&(t.len() as u32).to_le_bytes());
    out.extend_from_slice(t);
}

/// A cursor over section bytes; positions in errors are from the section's start.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Where `bytes` starts in the section.
    base: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ImageError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(ImageError::Short {
                what,
                at: self.base + self.at,
            });
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ImageError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ImageError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ImageError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(b))
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, ImageError> {
        let len = self.u32(what)? as usize;
        let at = self.base + self.at;
        std::str::from_utf8(self.take(len, what)?).map_err(|_| ImageError::Utf8 { what, at })
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, ImageError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(self.bad_value(what, value)),
        }
    }

    /// The error for the byte just read: not a value `what` can take.
    fn bad_value(&self, what: &'static str, value: u8) -> ImageError {
        ImageError::Value {
            what,
            value,
            at: self.base + self.at - 1,
        }
    }

    fn opt_str(&mut self, what: &'static str) -> Result<Option<&'a str>, ImageError> {
        Ok(if self.flag(what)? {
            Some(self.str(what)?)
        } else {
            None
        })
    }

    fn opt_u64(&mut self, what: &'static str) -> Result<Option<u64>, ImageError> {
        Ok(if self.flag(what)? {
            Some(self.u64(what)?)
        } else {
            None
        })
    }
}

/// One record, borrowed from the section's bytes with every field checked
/// (UTF-8, tags, the transcript's lines): reading one allocates nothing.
pub(super) struct RecordView<'a> {
    key: ConversationId,
    customer: &'a str,
    channel: &'a str,
    queue: &'a str,
    owner: &'a str,
    priority: i32,
    pub(super) state: ConversationState,
    agent_id: Option<&'a str>,
    offer_id: Option<&'a str>,
    previous_agent_id: Option<&'a str>,
    outcome: Option<&'static str>,
    opened_at_ms: u64,
    assigned_at_ms: Option<u64>,
    pub(super) ended_at_ms: Option<u64>,
    agent_replied: bool,
    previous_channels: SmallVec<[&'a str; 2]>,
    attributes: &'a str,
    transcript: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The record at `at` in a store section (an offset [`StoreBuilder`]
    /// checked when it left the record packed).
    pub(super) fn at(section: &'a [u8], at: u64) -> Result<RecordView<'a>, ImageError> {
        let at = at as usize;
        let mut r = Reader {
            bytes: section.get(at..).unwrap_or_default(),
            at: 0,
            base: at,
        };
        RecordView::read(&mut r)
    }

    fn read(r: &mut Reader<'a>) -> Result<RecordView<'a>, ImageError> {
        let key = ConversationId(r.u64("a conversation key")?);
        let customer = r.str("a customer id")?;
        let channel = r.str("a channel")?;
        let queue = r.str("a queue")?;
        let owner = r.str("an owner")?;
        let priority = r.u32("a priority")? as i32;
        let state = match r.u8("a state")? {
            0 => ConversationState::Waiting,
            1 => ConversationState::Offered,
            2 => ConversationState::Assigned,
            3 => ConversationState::Ended,
            value => return Err(r.bad_value("state", value)),
        };
        let agent_id = r.opt_str("an agent id")?;
        let offer_id = r.opt_str("an offer id")?;
        let previous_agent_id = r.opt_str("a previous agent id")?;
        let outcome = match r.u8("an outcome")? {
            0 => None,
            1 => Some("completed"),
            2 => Some("abandoned"),
            value => return Err(r.bad_value("outcome", value)),
        };
        let opened_at_ms = r.u64("an open time")?;
        let assigned_at_ms = r.opt_u64("an assign time")?;
        let ended_at_ms = r.opt_u64("an end time")?;
        let agent_replied = r.flag("agent replied")?;
        let n = r.u32("the previous channels")?;
        let previous_channels = (0..n)
            .map(|_| r.str("a previous channel"))
            .collect::<Result<SmallVec<_>, _>>()?;
        let attributes = r.str("the attributes")?;
        let len = r.u32("a transcript")? as usize;
        let transcript = r.take(len, "a transcript")?;
        Transcript::check(transcript).map_err(|source| ImageError::Transcript {
            conversation: key,
            source,
        })?;
        Ok(RecordView {
            key,
            customer,
            channel,
            queue,
            owner,
            priority,
            state,
            agent_id,
            offer_id,
            previous_agent_id,
            outcome,
            opened_at_ms,
            assigned_at_ms,
            ended_at_ms,
            agent_replied,
            previous_channels,
            attributes,
            transcript,
        })
    }

    /// The owned record, with `customer` as its customer id and names
    /// shared through `name`.
    pub(super) fn to_record(
        &self,
        customer: Name,
        name: &mut dyn FnMut(&str) -> Name,
    ) -> ConversationRecord {
        ConversationRecord {
            key: self.key,
            customer_id: customer,
            channel: name(self.channel),
            queue: name(self.queue),
            priority: self.priority,
            state: self.state,
            agent_id: self.agent_id.map(&mut *name),
            offer_id: self.offer_id.map(str::to_string),
            transcript: Transcript::from_checked(self.transcript),
            attributes: Attributes::from_json(self.attributes),
            previous_channels: self.previous_channels.iter().map(|c| name(c)).collect(),
            previous_agent_id: self.previous_agent_id.map(&mut *name),
            outcome: self.outcome,
            opened_at_ms: self.opened_at_ms,
            assigned_at_ms: self.assigned_at_ms,
            ended_at_ms: self.ended_at_ms,
            agent_replied: self.agent_replied,
            owner: name(self.owner),
        }
    }

    pub(super) fn customer(&self) -> &'a str {
        self.customer
    }
}

/// The store section of the snapshot a restart read, shared by the records
/// it left packed: `bytes[range]` is the section.
#[derive(Clone)]
pub struct PackedSection {
    pub bytes: Arc<dyn AsRef<[u8]> + Send + Sync>,
    pub range: std::ops::Range<usize>,
}

impl PackedSection {
    pub(super) fn section(&self) -> &[u8] {
        &(*self.bytes).as_ref()[self.range.clone()]
    }
}

impl std::fmt::Debug for PackedSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedSection")
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// The store section split into its parts (framing checked, records not yet).
#[derive(Debug)]
pub struct StoreSections<'a> {
    agents: &'a [u8],
    conversations: u64,
    /// Each chunk: its offset in the section, its record count, its bytes.
    chunks: Vec<(usize, u32, &'a [u8])>,
}

impl<'a> StoreSections<'a> {
    /// Checks the framing of a store section.
    pub fn parse(section: &'a [u8]) -> Result<StoreSections<'a>, ImageError> {
        let mut r = Reader {
            bytes: section,
            at: 0,
            base: 0,
        };
        let len = r.u64("the agents' length")? as usize;
        let agents = r.take(len, "the agents")?;
        let conversations = r.u64("the conversation count")?;
        let n = r.u32("the chunk count")?;
        let mut chunks = Vec::with_capacity(n as usize);
        let mut found = 0u64;
        for _ in 0..n {
            let count = r.u32("a chunk header")?;
            let len = r.u64("a chunk header")? as usize;
            let at = r.at;
            chunks.push((at, count, r.take(len, "a chunk")?));
            found += count as u64;
        }
        if r.at != section.len() {
            return Err(ImageError::Trailing(section.len() - r.at));
        }
        if found != conversations {
            return Err(ImageError::Total {
                expected: conversations,
                found,
            });
        }
        Ok(StoreSections {
            agents,
            conversations,
            chunks,
        })
    }

    /// Decodes everything into plain data (tests and tools; a restart uses
    /// [`StoreBuilder`]).
    pub fn to_image(&self) -> Result<StoreImage, ImageError> {
        let builder = StoreBuilder::new(self);
        builder.work()?;
        let store = builder.finish()?;
        Ok(StoreImage::from_records(store.records()))
    }
}

/// One restore thread's customer index, built without locks and merged into
/// the store's when the thread is done. A customer whose conversations two
/// threads decoded gets one shared id per thread (equal strings).
#[derive(Default)]
struct LocalCustomers<'a> {
    map: ahash::AHashMap<&'a str, (Name, Vec<ConversationId>)>,
}

impl<'a> LocalCustomers<'a> {
    fn link(&mut self, customer: &'a str, key: ConversationId) -> Name {
        let (name, ids) = self
            .map
            .entry(customer)
            .or_insert_with(|| (Name::from(customer), Vec::new()));
        ids.push(key);
        Name::clone(name)
    }

    fn into_lists(self) -> impl Iterator<Item = (Name, Vec<ConversationId>)> + use<'a> {
        self.map.into_values()
    }
}

/// What one restore thread keeps to itself until it is done.
#[derive(Default)]
struct Worker<'a> {
    names: LocalNames,
    customers: LocalCustomers<'a>,
    /// The keys it left packed.
    packed: Vec<ConversationId>,
}

/// Rebuilds a store from its sections: any number of threads call
/// [`work`](Self::work) (each takes the next chunk until none is left), then
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct StoreBuilder<'s, 'a> {
    sections: &'s StoreSections<'a>,
    /// Leave records in the snapshot's bytes ([`Slot::Packed`]).
    lazy: bool,
    store: Store,
    next: AtomicUsize,
    /// Names each worker interned, handed to the store at the end.
    names: Mutex<Vec<Name>>,
}

impl<'s, 'a> StoreBuilder<'s, 'a> {
    /// A builder that decodes every record.
    pub fn new(sections: &'s StoreSections<'a>) -> Self {
        StoreBuilder {
            sections,
            lazy: false,
            store: Store::with_capacity(sections.conversations as usize, 0),
            next: AtomicUsize::new(0),
            names: Mutex::new(Vec::new()),
        }
    }

    /// A builder that checks every record but leaves it in `section` (the
    /// bytes `sections` were parsed from, shared) until it is first used:
    /// a restart is ready without allocating a million records.
    pub fn lazy(sections: &'s StoreSections<'a>, section: PackedSection) -> Self {
        let mut builder = StoreBuilder::new(sections);
        builder.lazy = true;
        builder.store.set_packed(section);
        builder
    }

    /// Decodes chunks into the store until none is left (or one fails).
    pub fn work(&self) -> Result<(), ImageError> {
        let mut worker = Worker::default();
        let result = loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&(at, count, bytes)) = self.sections.chunks.get(i) else {
                break Ok(());
            };
            if let Err(e) = self.decode_chunk(i, at, count, bytes, &mut worker) {
                // Stop the others too: the store will not be used.
                self.next.store(usize::MAX / 2, Ordering::Relaxed);
                break Err(e);
            }
        };
        if result.is_ok() {
            self.store.merge_customers(worker.customers.into_lists());
            self.store.add_packed_keys(worker.packed);
        }
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(worker.names.into_names());
        result
    }

    fn decode_chunk(
        &self,
        chunk: usize,
        at: usize,
        count: u32,
        bytes: &'a [u8],
        worker: &mut Worker<'a>,
    ) -> Result<(), ImageError> {
        let mut r = Reader {
            bytes,
            at: 0,
            base: at,
        };
        let mut found = 0u32;
        while r.at < bytes.len() {
            let (key, slot) = self.decode_record(&mut r, worker)?;
            if let Slot::Packed(_) = slot {
                worker.packed.push(key);
            }
            self.store.conversations.insert(key, slot);
            found += 1;
        }
        if found != count {
            return Err(ImageError::Count {
                chunk,
                expected: count,
                found,
            });
        }
        Ok(())
    }

    fn decode_record(
        &self,
        r: &mut Reader<'a>,
        worker: &mut Worker<'a>,
    ) -> Result<(ConversationId, Slot), ImageError> {
        let at = (r.base + r.at) as u64;
        let view = RecordView::read(r)?;
        let customer = worker.customers.link(view.customer, view.key);
        let slot = if self.lazy {
            // Checked, linked, and left in the snapshot's bytes until used.
            Slot::Packed(at)
        } else {
            let names = &mut worker.names;
            Slot::Record(Box::new(view.to_record(customer, &mut |n| names.get(n))))
        };
        Ok((view.key, slot))
    }

    /// The rebuilt store: customers list their conversations oldest first
    /// (chunks finish in any order), agents are added.
    pub fn finish(self) -> Result<Store, ImageError> {
        let agents: Vec<AgentRecord> =
            bincode::deserialize(self.sections.agents).map_err(ImageError::Agents)?;
        let store = self.store;
        store
            .customers
            .iter_mut()
            .for_each(|mut ids| ids.sort_unstable());
        store.names.adopt(
            self.names
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for a in agents {
            store.agents.insert(a.id.clone(), a);
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protocol::Speaker;

    fn record(n: u64, customer: &str, channel: &str) -> ConversationRecord {
        ConversationRecord {
            attributes: Attributes::from_json(r#"{"order":7}"#),
            ..crate::store::tests::conv(n, customer, channel)
        }
    }

    /// A store rebuilt lazily from the encoded form of `store`.
    fn lazily_rebuilt(store: &Store) -> Store {
        let image = StoreImage::from_records(store.records());
        let mut bytes = Vec::new();
        encode(&image, &mut bytes).expect("encode");
        let bytes: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(bytes);
        let section = PackedSection {
            range: 0..(*bytes).as_ref().len(),
            bytes: Arc::clone(&bytes),
        };
        let sections = StoreSections::parse((*bytes).as_ref()).expect("framing");
        let builder = StoreBuilder::lazy(&sections, section.clone());
        builder.work().expect("records check out");
        builder.finish().expect("agents")
    }

    #[test]
    fn a_lazily_restored_store_reads_updates_and_forgets_like_a_decoded_one() {
        let live = Store::new();
        live.insert_conversation(record(1, "cu", "chat"));
        live.insert_conversation(record(2, "cu", "voice"));
        live.insert_conversation(record(3, "solo", "email"));
        live.append_line(ConversationId(1), Speaker::Customer, "hello".into(), 5);
        live.update_conversation(ConversationId(3), |r| {
            r.state = ConversationState::Ended;
            r.ended_at_ms = Some(9_000);
        });

        let store = lazily_rebuilt(&live);
        assert!(store.packed().is_some());
        // Reads decode without changing anything.
        assert_eq!(
            StoreImage::from_records(store.records()),
            StoreImage::from_records(live.records())
        );
        assert_eq!(store.live_conversations(), 2);
        assert_eq!(store.ended_before(9_000), vec![ConversationId(3)]);
        assert_eq!(store.ended_before(8_999), vec![]);
        let history: Vec<u64> = store
            .customer_conversations("cu")
            .iter()
            .map(|r| r.key.0)
            .collect();
        assert_eq!(history, [1, 2]);
        let (_, context) = store.offer_context(ConversationId(2)).expect("known");
        assert_eq!(context.customer_history.len(), 1);
        assert_eq!(context.transcript.len(), 0);
        // A read in place decodes a packed record for the reader only.
        let channel = |id| store.read_conversation(ConversationId(id), |r| r.channel.to_string());
        assert_eq!(channel(2).as_deref(), Some("voice"));
        assert_eq!(channel(4), None);
        // A write decodes the record for good.
        store.append_line(ConversationId(1), Speaker::Agent, "hi".into(), 6);
        let one = store.conversation(ConversationId(1)).expect("known");
        assert_eq!(one.transcript.len(), 2);
        assert_eq!(
            store.read_conversation(ConversationId(1), |r| r.transcript.len()),
            Some(2)
        );
        assert_eq!(one.attributes.to_map()["order"], 7);
        // Forgetting a packed one unlinks it from its customer.
        store.remove_conversation(ConversationId(2));
        assert_eq!(store.customer_conversations("cu").len(), 1);
        // Decoding in the background lets the snapshot's bytes go.
        assert_eq!(
            store.unpack_some(1),
            2,
            "three were packed, one decoded now"
        );
        assert_eq!(store.unpack_some(usize::MAX), 0);
        assert!(store.packed().is_none());
        assert_eq!(
            store
                .conversation(ConversationId(3))
                .expect("known")
                .ended_at_ms,
            Some(9_000)
        );
        assert_eq!(store.conversation(ConversationId(1)), Some(one));
    }

    #[test]
    fn a_damaged_record_is_refused_when_the_store_is_rebuilt_not_when_read() {
        let live = Store::new();
        live.insert_conversation(record(1, "cu", "chat"));
        let image = StoreImage::from_records(live.records());
        let mut bytes = Vec::new();
        encode(&image, &mut bytes).expect("encode");
        // The record is last; its state byte follows the key, four strings
        // (`cu`, `chat`, `general`, `gw`) and the priority.
        let mut one = Vec::new();
        encode_record(&image.conversations[0], &mut one);
        let at = bytes.len() - one.len() + 8 + (4 + 2) + (4 + 4) + (4 + 7) + (4 + 2) + 4;
        assert_eq!(bytes[at], 0, "waiting");
        let mut damaged = bytes.clone();
        damaged[at] = 9;
        let sections = StoreSections::parse(&damaged).expect("framing is intact");
        let section = PackedSection {
            range: 0..damaged.len(),
            bytes: Arc::new(damaged.clone()),
        };
        let builder = StoreBuilder::lazy(&sections, section);
        assert!(builder.work().is_err(), "a bad tag is caught at restore");
    }
}
