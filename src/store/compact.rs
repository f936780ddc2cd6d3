//! Compact field types of a stored conversation, so that a record costs few
//! allocations (a restart rebuilds a million of them) and little memory.
//!
//! - [`Name`]: a channel, queue, connector or agent name, shared through
//!   [`Names`] (an interner) instead of one `String` per record.
//! - [`Transcript`]: every line in one encoded byte blob; lines are decoded
//!   when something reads them (an offer, the REST API), never on the
//!   routing path.
//! - [`Attributes`]: the attributes object as the JSON text it arrived in,
//!   parsed when read.
//!
//! Both blobs are stored in snapshots byte for byte, so restoring one is a
//! single allocation and a copy. This module holds data only: no I/O, no
//! locks other than the interner's own.

use crate::api::protocol::{Speaker, TranscriptLine};
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

/// A shared, immutable name.
pub type Name = Arc<str>;

/// The interner behind [`Name`]s: one allocation per distinct name. Names
/// are those of the configuration (channels, queues, token names) and of
/// agents, so the set stays small.
#[derive(Debug, Default)]
pub struct Names {
    set: Mutex<HashSet<Name, ahash::RandomState>>,
}

impl Names {
    /// The shared copy of `name`.
    pub fn get(&self, name: &str) -> Name {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = set.get(name) {
            return Arc::clone(found);
        }
        let name: Name = Arc::from(name);
        set.insert(Arc::clone(&name));
        name
    }

    /// Adopts names interned elsewhere (by a restore thread).
    pub fn adopt(&self, names: impl IntoIterator<Item = Name>) {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        set.extend(names);
    }
}

/// A lock-free interner for one thread (restore): a handful of names, found
/// by a linear scan.
#[derive(Debug, Default)]
pub struct LocalNames {
    names: Vec<Name>,
}

impl LocalNames {
    pub fn get(&mut self, name: &str) -> Name {
        if let Some(found) = self.names.iter().find(|n| ***n == *name) {
            return Arc::clone(found);
        }
        let name: Name = Arc::from(name);
        self.names.push(Arc::clone(&name));
        name
    }

    pub fn into_names(self) -> Vec<Name> {
        self.names
    }
}

/// A transcript: lines, oldest first, as one blob. Each line is
/// `from` (1 byte: 0 customer, 1 agent), `at_ms` (u64), the channel
/// (u32 length + UTF-8) and the text (u32 length + UTF-8), little endian.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    bytes: Box<[u8]>,
}

/// Why transcript bytes are not a transcript.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed transcript at byte {at}")]
pub struct MalformedTranscript {
    pub at: usize,
}

/// One line, borrowed from a [`Transcript`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef<'a> {
    pub from: Speaker,
    pub at_ms: u64,
    pub channel: &'a str,
    pub text: &'a str,
}

impl LineRef<'_> {
    pub fn to_line(self) -> TranscriptLine {
        TranscriptLine {
            from: self.from,
            text: self.text.to_string(),
            at_ms: self.at_ms,
            channel: self.channel.to_string(),
        }
    }
}

impl Transcript {
    /// Wraps bytes checked to be a transcript.
    pub fn from_bytes(bytes: &[u8]) -> Result<Transcript, MalformedTranscript> {
        Transcript::check(bytes)?;
        Ok(Transcript {
            bytes: bytes.into(),
        })
    }

    /// Wraps bytes that passed [`Transcript::check`].
    pub(super) fn from_checked(bytes: &[u8]) -> Transcript {
        Transcript {
            bytes: bytes.into(),
        }
    }

    /// Whether `bytes` are whole, valid lines (without copying them).
    pub fn check(bytes: &[u8]) -> Result<(), MalformedTranscript> {
        let mut at = 0;
        while at < bytes.len() {
            at = decode_line(bytes, at).ok_or(MalformedTranscript { at })?.1;
        }
        Ok(())
    }

    /// The encoded lines (what a snapshot stores).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Appends a line (one reallocation of the blob).
    pub fn push(&mut self, from: Speaker, at_ms: u64, channel: &str, text: &str) {
        // (Frames are far below 4 GiB, so the lengths fit.)
        let (channel, text) = (channel.as_bytes(), text.as_bytes());
        let mut bytes = Vec::with_capacity(self.bytes.len() + 17 + channel.len() + text.len());
        bytes.extend_from_slice(&self.bytes);
        bytes.push(match from {
            Speaker::Customer => 0,
            Speaker::Agent => 1,
        });
        bytes.extend_from_slice(&at_ms.to_le_bytes());
        bytes.extend_from_slice(&(channel.len() as u32).to_le_bytes());
        bytes.extend_from_slice(channel);
        bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
        bytes.extend_from_slice(text);
        self.bytes = bytes.into_boxed_slice();
    }

    /// The lines, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = LineRef<'_>> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let (line, next) = decode_line(&self.bytes, at)?;
            at = next;
            Some(line)
        })
    }

    /// Every line as an owned [`TranscriptLine`].
    pub fn to_lines(&self) -> Vec<TranscriptLine> {
        self.lines().map(LineRef::to_line).collect()
    }

    pub fn len(&self) -> usize {
        self.lines().count()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The line at byte `at` and where the next one starts; `None` if the bytes
/// there are not a whole, valid line.
fn decode_line(bytes: &[u8], at: usize) -> Option<(LineRef<'_>, usize)> {
    let take = |at: usize, n: usize| bytes.get(at..at.checked_add(n)?);
    let from = match *bytes.get(at)? {
        0 => Speaker::Customer,
        1 => Speaker::Agent,
        _ => return None,
    };
    let at_ms = u64::from_le_bytes(take(at + 1, 8)?.try_into().ok()?);
    let channel_len = u32::from_le_bytes(take(at + 9, 4)?.try_into().ok()?) as usize;
    let channel = std::str::from_utf8(take(at + 13, channel_len)?).ok()?;
    let at = at + 13 + channel_len;
    let text_len = u32::from_le_bytes(take(at, 4)?.try_into().ok()?) as usize;
    let text = std::str::from_utf8(take(at + 4, text_len)?).ok()?;
    let line = LineRef {
        from,
        at_ms,
        channel,
        text,
    };
    Some((line, at + 4 + text_len))
}

impl FromIterator<TranscriptLine> for Transcript {
    fn from_iter<I: IntoIterator<Item = TranscriptLine>>(lines: I) -> Self {
        let mut t = Transcript::default();
        for l in lines {
            t.push(l.from, l.at_ms, &l.channel, &l.text);
        }
        t
    }
}

/// Serialized as the list of lines, as the API has always shown them.
impl Serialize for Transcript {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for line in self.lines() {
            seq.serialize_element(&line.to_line())?;
        }
        seq.end()
    }
}

/// A conversation's attributes: a JSON object as text (empty text: `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    json: Box<str>,
}

impl Attributes {
    /// Keeps `json` as it is; it is parsed when read.
    pub fn from_json(json: &str) -> Attributes {
        let json = json.trim();
        Attributes {
            json: if json == "{}" { "".into() } else { json.into() },
        }
    }

    pub fn from_map(map: Map<String, Value>) -> Attributes {
        if map.is_empty() {
            return Attributes::default();
        }
        Attributes {
            json: Value::Object(map).to_string().into(),
        }
    }

    /// The JSON text (what a snapshot stores; `{}` when empty).
    pub fn as_json(&self) -> &str {
        if self.json.is_empty() {
            "{}"
        } else {
            &self.json
        }
    }

    /// The parsed object; text that is not a JSON object (it never is
    /// written so) reads as empty, with a warning.
    pub fn to_map(&self) -> Map<String, Value> {
        if self.json.is_empty() {
            return Map::new();
        }
        serde_json::from_str(&self.json).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "stored attributes are not a JSON object; read as empty");
            Map::new()
        })
    }
}

/// Serialized as the object itself.
impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_lines_round_trip_and_damage_is_caught() {
        let mut t = Transcript::default();
        assert!(t.is_empty());
        t.push(Speaker::Customer, 5, "chat", "hello");
        t.push(Speaker::Agent, 9, "voice", "héllo, ünïcode");
        t.push(Speaker::Customer, 10, "chat", "");
        let lines = t.to_lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1].from, Speaker::Agent);
        assert_eq!(lines[1].text, "héllo, ünïcode");
        assert_eq!(lines[1].channel, "voice");
        assert_eq!(lines[2].at_ms, 10);
        assert_eq!(Transcript::from_bytes(t.as_bytes()), Ok(t.clone()));
        assert_eq!(lines.into_iter().collect::<Transcript>(), t);
        let bytes = t.as_bytes();
        assert!(Transcript::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut bad = bytes.to_vec();
        bad[0] = 7;
        assert_eq!(
            Transcript::from_bytes(&bad),
            Err(MalformedTranscript { at: 0 })
        );
        assert_eq!(
            serde_json::to_value(&t).expect("json")[0],
            serde_json::json!({"from": "customer", "text": "hello", "at_ms": 5, "channel": "chat"})
        );
    }

    #[test]
    fn attributes_keep_their_text_and_read_as_an_object() {
        let a = Attributes::from_json(r#"{"tier":"gold","n":3}"#);
        assert_eq!(a.to_map()["tier"], "gold");
        assert_eq!(
            serde_json::to_value(&a).expect("json"),
            serde_json::json!({"tier": "gold", "n": 3})
        );
        assert_eq!(Attributes::from_json("{}"), Attributes::default());
        assert_eq!(Attributes::default().as_json(), "{}");
        assert_eq!(Attributes::from_map(a.to_map()).to_map(), a.to_map());
    }

    #[test]
    fn names_are_shared() {
        let names = Names::default();
        let a = names.get("chat");
        let b = names.get("chat");
        assert!(Arc::ptr_eq(&a, &b));
        let mut local = LocalNames::default();
        let c = local.get("voice");
        assert!(Arc::ptr_eq(&c, &local.get("voice")));
        names.adopt(local.into_names());
        assert!(Arc::ptr_eq(&c, &names.get("voice")));
    }
}
