//! The frames of wire contract v1 that the load generator sends and reads.
//!
//! Outgoing frames are built here and nowhere else; incoming frames are read
//! leniently into [`Incoming`] (unknown fields are ignored, an unknown
//! `type` is kept by name) because the load generator must report what the
//! engine does, not fall over on an extension. No I/O here.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A frame received from the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Ack {
        req_id: Option<u64>,
        conversation_id: Option<String>,
    },
    Error {
        req_id: Option<u64>,
        code: String,
        message: String,
    },
    Offer {
        offer_id: String,
        conversation_id: String,
        customer_id: Option<String>,
        channel: String,
    },
    /// Any `offer.*` push naming an offer (withdrawn, expired, ended …).
    OfferEnded {
        offer_id: String,
    },
    Assigned {
        conversation_id: String,
        agent_id: Option<String>,
        channel: Option<String>,
    },
    Sla,
    /// The engine changed the agent's presence on its own (e.g. `away` after an offer expired).
    StatusChanged {
        status: String,
    },
    /// A frame this client does not act on, by its type.
    Other(String),
    /// Not a JSON object with a string `type`.
    Malformed,
}

fn req_id(v: &Value) -> Option<u64> {
    match v.get("req_id")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn string(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads one text frame: in one pass over the fields it needs when it can
/// (an offer's context, for one, is skipped rather than built), else
/// through a `Value`, which reads any JSON alike.
pub fn parse(text: &str) -> Incoming {
    parse_fields(text).unwrap_or_else(|| parse_value(text))
}

/// A field the generator reads: a string, a number (kept as its text), or
/// anything else (read as absent, as [`string`] does).
#[derive(Deserialize)]
#[serde(untagged)]
enum Lenient<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Number(serde_json::Number),
    Other(IgnoredAny),
}

impl Lenient<'_> {
    fn text(&self) -> Option<String> {
        match self {
            Lenient::Text(s) => Some(s.to_string()),
            Lenient::Number(n) => Some(n.to_string()),
            Lenient::Other(_) => None,
        }
    }

    fn req_id(&self) -> Option<u64> {
        match self {
            Lenient::Text(s) => s.parse().ok(),
            Lenient::Number(n) => n.as_u64(),
            Lenient::Other(_) => None,
        }
    }
}

/// The fields of every frame the generator acts on; the rest are skipped.
/// (`type` borrows from the text, so the others may too.)
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    req_id: Option<Lenient<'a>>,
    conversation_id: Option<Lenient<'a>>,
    offer_id: Option<Lenient<'a>>,
    customer_id: Option<Lenient<'a>>,
    channel: Option<Lenient<'a>>,
    agent_id: Option<Lenient<'a>>,
    code: Option<Lenient<'a>>,
    message: Option<Lenient<'a>>,
    status: Option<Lenient<'a>>,
}

/// [`parse`]'s one pass; `None` where it cannot read the frame (no string
/// `type`, a repeated field, not JSON), which [`parse_value`] then judges.
fn parse_fields(text: &str) -> Option<Incoming> {
    let f: Fields = serde_json::from_str(text).ok()?;
    let field = |name: &str| {
        let value = match name {
            "conversation_id" => &f.conversation_id,
            "offer_id" => &f.offer_id,
            "customer_id" => &f.customer_id,
            "channel" => &f.channel,
            "agent_id" => &f.agent_id,
            "code" => &f.code,
            "message" => &f.message,
            "status" => &f.status,
            _ => &None,
        };
        value.as_ref().and_then(Lenient::text)
    };
    let req_id = f.req_id.as_ref().and_then(Lenient::req_id);
    Some(incoming(f.kind.as_deref()?, req_id, field))
}

/// [`parse`] through a `Value`: any JSON, read as [`parse_fields`] reads
/// what it can.
fn parse_value(text: &str) -> Incoming {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Incoming::Malformed;
    };
    let Some(kind) = v.get("type").and_then(Value::as_str) else {
        return Incoming::Malformed;
    };
    incoming(kind, req_id(&v), |name| string(&v, name))
}

/// A frame of type `kind`, whichever reader read it: `field` gives a
/// string field by name (a number as its text; absent otherwise).
fn incoming(kind: &str, req_id: Option<u64>, field: impl Fn(&str) -> Option<String>) -> Incoming {
    match kind {
        "ack" => Incoming::Ack {
            req_id,
            conversation_id: field("conversation_id"),
        },
        "error" => Incoming::Error {
            req_id,
            code: field("code").unwrap_or_else(|| "unknown".into()),
            message: field("message").unwrap_or_default(),
        },
        "offer" => match (
            field("offer_id"),
            field("conversation_id"),
            field("channel"),
        ) {
            (Some(offer_id), Some(conversation_id), Some(channel)) => Incoming::Offer {
                offer_id,
                conversation_id,
                customer_id: field("customer_id"),
                channel,
            },
            _ => Incoming::Malformed,
        },
        "conversation.assigned" => match field("conversation_id") {
            Some(conversation_id) => Incoming::Assigned {
                conversation_id,
                agent_id: field("agent_id"),
                channel: field("channel"),
            },
            None => Incoming::Malformed,
        },
        "conversation.sla" => Incoming::Sla,
        "agent.status" => Incoming::StatusChanged {
            status: field("status").unwrap_or_default(),
        },
        k if k.starts_with("offer.") => match field("offer_id") {
            Some(offer_id) => Incoming::OfferEnded { offer_id },
            None => Incoming::Other(k.to_string()),
        },
        k => Incoming::Other(k.to_string()),
    }
}

fn map(m: &BTreeMap<String, u8>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

pub fn agent_login(
    req: u64,
    agent_id: &str,
    skills: &BTreeMap<String, u8>,
    capacity: &BTreeMap<String, u8>,
) -> String {
    json!({"type": "agent.login", "req_id": req, "agent_id": agent_id, "name": agent_id, "skills": map(skills), "capacity": map(capacity)}).to_string()
}

pub fn agent_status(req: u64, status: &str) -> String {
    json!({"type": "agent.status", "req_id": req, "status": status}).to_string()
}

pub fn offer_accept(req: u64, offer_id: &str) -> String {
    json!({"type": "offer.accept", "req_id": req, "offer_id": offer_id}).to_string()
}

pub fn offer_reject(req: u64, offer_id: &str) -> String {
    json!({"type": "offer.reject", "req_id": req, "offer_id": offer_id}).to_string()
}

pub fn complete(req: u64, conversation_id: &str) -> String {
    json!({"type": "conversation.complete", "req_id": req, "conversation_id": conversation_id})
        .to_string()
}

/// `conversation.open`; `queue` and `priority` are sent only when set.
pub fn open(
    req: u64,
    customer_id: &str,
    channel: &str,
    queue: Option<&str>,
    skills: &BTreeMap<String, u8>,
    priority: Option<i32>,
) -> String {
    let mut v = json!({"type": "conversation.open", "req_id": req, "customer_id": customer_id, "channel": channel});
    if let Some(obj) = v.as_object_mut() {
        if !skills.is_empty() {
            obj.insert("skills".into(), map(skills));
        }
        if let Some(q) = queue {
            obj.insert("queue".into(), json!(q));
        }
        if let Some(p) = priority {
            obj.insert("priority".into(), json!(p));
        }
    }
    v.to_string()
}

pub fn message(req: u64, conversation_id: &str, text: &str) -> String {
    json!({"type": "conversation.message", "req_id": req, "conversation_id": conversation_id, "from": "customer", "text": text}).to_string()
}

pub fn switch_channel(req: u64, conversation_id: &str, channel: &str) -> String {
    json!({"type": "conversation.switch_channel", "req_id": req, "conversation_id": conversation_id, "channel": channel}).to_string()
}

pub fn abandon(req: u64, conversation_id: &str) -> String {
    json!({"type": "conversation.abandon", "req_id": req, "conversation_id": conversation_id})
        .to_string()
}

/// The echo probe frame: a JSON object padded to about `bytes` bytes.
pub fn echo_probe(seq: u64, bytes: usize) -> String {
    let head = json!({"type": "echo", "seq": seq, "pad": ""}).to_string();
    let pad = "x".repeat(bytes.saturating_sub(head.len()));
    json!({"type": "echo", "seq": seq, "pad": pad}).to_string()
}

/// The `seq` of an echoed probe.
pub fn echo_seq(text: &str) -> Option<u64> {
    serde_json::from_str::<Value>(text)
        .ok()?
        .get("seq")?
        .as_u64()
}

/// The local sequence number carried in a customer id built by [`customer_id`].
pub fn seq_of_customer(customer_id: &str, prefix: &str) -> Option<usize> {
    customer_id.strip_prefix(prefix)?.parse().ok()
}

/// Customer ids are `{prefix}{seq}`: an offer names its customer, so any
/// agent can find the conversation's record even before the open's ack.
pub fn customer_id(prefix: &str, seq: usize) -> String {
    format!("{prefix}{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_contract_frames() {
        assert_eq!(
            parse(r#"{"type":"ack","req_id":7,"conversation_id":"c-12"}"#),
            Incoming::Ack {
                req_id: Some(7),
                conversation_id: Some("c-12".into())
            }
        );
        assert_eq!(
            parse(r#"{"type":"ack","req_id":"8"}"#),
            Incoming::Ack {
                req_id: Some(8),
                conversation_id: None
            }
        );
        assert_eq!(
            parse(r#"{"type":"error","req_id":3,"code":"invalid_state","message":"no"}"#),
            Incoming::Error {
                req_id: Some(3),
                code: "invalid_state".into(),
                message: "no".into()
            }
        );
        let offer = r#"{"type":"offer","offer_id":"o-7","conversation_id":"c-12","customer_id":"lt-5","channel":"chat","priority":0,"waited_ms":3,"expires_in_ms":20000,"context":{"transcript":[]}}"#;
        assert_eq!(
            parse(offer),
            Incoming::Offer {
                offer_id: "o-7".into(),
                conversation_id: "c-12".into(),
                customer_id: Some("lt-5".into()),
                channel: "chat".into()
            }
        );
        assert_eq!(
            parse(r#"{"type":"offer.withdrawn","offer_id":"o-7"}"#),
            Incoming::OfferEnded {
                offer_id: "o-7".into()
            }
        );
        assert_eq!(
            parse(
                r#"{"type":"conversation.assigned","conversation_id":"c-1","agent_id":"a","channel":"chat"}"#
            ),
            Incoming::Assigned {
                conversation_id: "c-1".into(),
                agent_id: Some("a".into()),
                channel: Some("chat".into())
            }
        );
        assert_eq!(
            parse(r#"{"type":"conversation.sla","level":"warning"}"#),
            Incoming::Sla
        );
        assert_eq!(
            parse(
                r#"{"type":"offer.ended","offer_id":"o-2","conversation_id":"c-1","reason":"expired"}"#
            ),
            Incoming::OfferEnded {
                offer_id: "o-2".into()
            }
        );
        assert_eq!(
            parse(
                r#"{"type":"agent.status","agent_id":"a","status":"away","reason":"offer_expired"}"#
            ),
            Incoming::StatusChanged {
                status: "away".into()
            }
        );
        assert_eq!(
            parse(r#"{"type":"event","kind":"x"}"#),
            Incoming::Other("event".into())
        );
        assert_eq!(parse("not json"), Incoming::Malformed);
        assert_eq!(
            parse(r#"{"type":"offer","offer_id":"o-1"}"#),
            Incoming::Malformed
        );
    }

    #[test]
    fn the_one_pass_reader_agrees_with_the_value_reader() {
        let frames = [
            r#"{"type":"ack","req_id":7,"conversation_id":"c-12"}"#,
            r#"{"type":"ack","req_id":"8","conversation_id":12}"#,
            r#"{"type":"ack","req_id":-1,"conversation_id":null}"#,
            r#"{"type":"ack","req_id":1.5,"conversation_id":{"a":1}}"#,
            r#"{"type":"ack","req_id":"x","conversation_id":[1]}"#,
            r#"{"type":"error","req_id":3,"code":"invalid_state","message":"n\"o\u00e9"}"#,
            r#"{"type":"error"}"#,
            r#"{"type":"offer","offer_id":"o-7","conversation_id":"c-12","customer_id":"lt-5","channel":"chat","priority":0,"waited_ms":3,"expires_in_ms":20000,"context":{"transcript":[{"from":"customer","text":"hi","at_ms":1,"channel":"chat"}],"attributes":{"vip":true},"previous_channels":[],"previous_agent_id":null,"customer_history":[]}}"#,
            r#"{"type":"offer","offer_id":"o-7","conversation_id":"c-12","channel":true}"#,
            r#"{"type":"offer","offer_id":"o-1"}"#,
            r#"{"type":"offer.withdrawn","offer_id":"o-7"}"#,
            r#"{"type":"offer.ended","offer_id":false}"#,
            r#"{"type":"conversation.assigned","conversation_id":"c-1","agent_id":"a","channel":"chat"}"#,
            r#"{"type":"conversation.assigned"}"#,
            r#"{"type":"conversation.sla","level":"warning"}"#,
            r#"{"type":"agent.status","status":"away","reason":"offer_expired"}"#,
            r#"{"type":"agent.status","status":5}"#,
            r#"{"type":"event","kind":"x","data":{"type":"ack"}}"#,
            r#"{"type":"\u0061ck","req_id":2}"#,
        ];
        for text in frames {
            let fast = parse_fields(text).unwrap_or_else(|| panic!("{text}: not read in one pass"));
            assert_eq!(fast, parse_value(text), "{text}");
        }
        // What the one pass leaves to the Value reader, which reads it as before.
        for text in [
            "not json",
            r#"{"req_id":1}"#,
            r#"{"type":7}"#,
            r#"{"type":"ack","req_id":1,"req_id":2}"#,
            r#"[1,2]"#,
        ] {
            assert_eq!(parse_fields(text), None, "{text}");
        }
        assert_eq!(
            parse(r#"{"type":"ack","req_id":1,"req_id":2}"#),
            Incoming::Ack {
                req_id: Some(2),
                conversation_id: None
            }
        );
    }

    #[test]
    fn builds_contract_frames() {
        let skills: BTreeMap<String, u8> = [("billing".to_string(), 2)].into();
        let v: Value =
            serde_json::from_str(&open(1, "lt-0", "chat", None, &skills, Some(3))).expect("json");
        assert_eq!(v["type"], "conversation.open");
        assert_eq!(v["skills"]["billing"], 2);
        assert_eq!(v["priority"], 3);
        assert!(v.get("queue").is_none());
        let v: Value = serde_json::from_str(&agent_login(
            2,
            "a-1",
            &skills,
            &[("chat".to_string(), 3)].into(),
        ))
        .expect("json");
        assert_eq!(v["capacity"]["chat"], 3);
        assert_eq!(v["agent_id"], "a-1");
    }

    #[test]
    fn echo_probes_have_the_requested_size_and_round_trip() {
        let p = echo_probe(41, 300);
        assert!((299..=301).contains(&p.len()), "{}", p.len());
        assert_eq!(echo_seq(&p), Some(41));
    }

    #[test]
    fn customer_ids_map_back_to_sequence_numbers() {
        assert_eq!(seq_of_customer(&customer_id("lt-", 17), "lt-"), Some(17));
        assert_eq!(seq_of_customer("other-17", "lt-"), None);
    }
}
