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
use super::{AgentRecord, ConversationRecord, ConversationState, Name, Store};
use crate::routing::ConversationId;
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
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
            value => Err(ImageError::Value {
                what,
                value,
                at: self.base + self.at - 1,
            }),
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

/// Rebuilds a store from its sections: any number of threads call
/// [`work`](Self::work) (each takes the next chunk until none is left), then
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct StoreBuilder<'s, 'a> {
    sections: &'s StoreSections<'a>,
    store: Store,
    next: AtomicUsize,
    /// Names each worker interned, handed to the store at the end.
    names: Mutex<Vec<Name>>,
}

impl<'s, 'a> StoreBuilder<'s, 'a> {
    pub fn new(sections: &'s StoreSections<'a>) -> Self {
        StoreBuilder {
            sections,
            store: Store::with_capacity(sections.conversations as usize, 0),
            next: AtomicUsize::new(0),
            names: Mutex::new(Vec::new()),
        }
    }

    /// Decodes chunks into the store until none is left (or one fails).
    pub fn work(&self) -> Result<(), ImageError> {
        let mut names = LocalNames::default();
        let mut customers = LocalCustomers::default();
        let result = loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&(at, count, bytes)) = self.sections.chunks.get(i) else {
                break Ok(());
            };
            let decoded = self.decode_chunk(i, at, count, bytes, &mut names, &mut customers);
            if let Err(e) = decoded {
                // Stop the others too: the store will not be used.
                self.next.store(usize::MAX / 2, Ordering::Relaxed);
                break Err(e);
            }
        };
        if result.is_ok() {
            self.store.merge_customers(customers.into_lists());
        }
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(names.into_names());
        result
    }

    fn decode_chunk(
        &self,
        chunk: usize,
        at: usize,
        count: u32,
        bytes: &'a [u8],
        names: &mut LocalNames,
        customers: &mut LocalCustomers<'a>,
    ) -> Result<(), ImageError> {
        let mut r = Reader {
            bytes,
            at: 0,
            base: at,
        };
        let mut found = 0u32;
        while r.at < bytes.len() {
            let record = self.decode_record(&mut r, names, customers)?;
            self.store
                .conversations
                .insert(record.key, Box::new(record));
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
        names: &mut LocalNames,
        customers: &mut LocalCustomers<'a>,
    ) -> Result<ConversationRecord, ImageError> {
        let key = ConversationId(r.u64("a conversation key")?);
        let customer = r.str("a customer id")?;
        let channel = names.get(r.str("a channel")?);
        let queue = names.get(r.str("a queue")?);
        let owner = names.get(r.str("an owner")?);
        let priority = r.u32("a priority")? as i32;
        let state = match r.u8("a state")? {
            0 => ConversationState::Waiting,
            1 => ConversationState::Offered,
            2 => ConversationState::Assigned,
            3 => ConversationState::Ended,
            value => {
                return Err(ImageError::Value {
                    what: "state",
                    value,
                    at: r.base + r.at - 1,
                })
            }
        };
        let agent_id = r.opt_str("an agent id")?.map(|a| names.get(a));
        let offer_id = r.opt_str("an offer id")?.map(str::to_string);
        let previous_agent_id = r.opt_str("a previous agent id")?.map(|a| names.get(a));
        let outcome = match r.u8("an outcome")? {
            0 => None,
            1 => Some("completed"),
            2 => Some("abandoned"),
            value => {
                return Err(ImageError::Value {
                    what: "outcome",
                    value,
                    at: r.base + r.at - 1,
                })
            }
        };
        let opened_at_ms = r.u64("an open time")?;
        let assigned_at_ms = r.opt_u64("an assign time")?;
        let ended_at_ms = r.opt_u64("an end time")?;
        let agent_replied = r.flag("agent replied")?;
        let n = r.u32("the previous channels")?;
        let previous_channels = (0..n)
            .map(|_| r.str("a previous channel").map(|c| names.get(c)))
            .collect::<Result<Vec<_>, _>>()?;
        let attributes = Attributes::from_json(r.str("the attributes")?);
        let len = r.u32("a transcript")? as usize;
        let transcript =
            Transcript::from_bytes(r.take(len, "a transcript")?).map_err(|source| {
                ImageError::Transcript {
                    conversation: key,
                    source,
                }
            })?;
        Ok(ConversationRecord {
            key,
            customer_id: customers.link(customer, key),
            channel,
            queue,
            priority,
            state,
            agent_id,
            offer_id,
            transcript,
            attributes,
            previous_channels,
            previous_agent_id,
            outcome,
            opened_at_ms,
            assigned_at_ms,
            ended_at_ms,
            agent_replied,
            owner,
        })
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
