//! Wire contract v1: every WebSocket frame, in one place.
//!
//! Client frames are `#[serde(tag = "type")]` enums whose payload structs use
//! `#[serde(deny_unknown_fields)]`; server frames are serialized the same way.
//! [`parse_client_frame`] turns raw text into a frame or an [`ProtocolError`]
//! with a stable code. This module must never rename a frame or a field that
//! the wire contract in `docs/protocol.md` names, and never does I/O.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Stable error codes sent in `error` frames and used as the `code` metric label.
pub mod codes {
    pub const MALFORMED_JSON: &str = "malformed_json";
    pub const BAD_FRAME: &str = "bad_frame";
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    pub const MISSING_FIELD: &str = "missing_field";
    pub const UNKNOWN_FIELD: &str = "unknown_field";
    pub const INVALID_FIELD: &str = "invalid_field";
    pub const FRAME_TOO_LARGE: &str = "frame_too_large";
    pub const BINARY_FRAME: &str = "binary_frame";
    pub const WRONG_ROLE: &str = "wrong_role";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_LOGGED_IN: &str = "not_logged_in";
    pub const UNKNOWN_CONVERSATION: &str = "unknown_conversation";
    pub const UNKNOWN_OFFER: &str = "unknown_offer";
    pub const UNKNOWN_AGENT: &str = "unknown_agent";
    pub const UNKNOWN_CHANNEL: &str = "unknown_channel";
    pub const UNKNOWN_QUEUE: &str = "unknown_queue";
    pub const INVALID_STATE: &str = "invalid_state";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const NOT_FOUND: &str = "not_found";
    pub const INTERNAL: &str = "internal";

    /// Every code the server can send (the routing core's codes included).
    pub const ALL: &[&str] = &[
        MALFORMED_JSON,
        BAD_FRAME,
        UNKNOWN_TYPE,
        MISSING_FIELD,
        UNKNOWN_FIELD,
        INVALID_FIELD,
        FRAME_TOO_LARGE,
        BINARY_FRAME,
        WRONG_ROLE,
        FORBIDDEN,
        NOT_LOGGED_IN,
        UNKNOWN_CONVERSATION,
        UNKNOWN_OFFER,
        UNKNOWN_AGENT,
        UNKNOWN_CHANNEL,
        UNKNOWN_QUEUE,
        INVALID_STATE,
        UNAVAILABLE,
        UNAUTHORIZED,
        NOT_FOUND,
        INTERNAL,
        "bad_skill_level",
        "too_many_skills",
        "wrong_channel",
    ];
}

/// Who a token belongs to (as configured); decides which frames a
/// connection may send.
pub use crate::config::Role;

/// Who sent a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Customer,
    Agent,
}

/// `conversation.open`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenConversation {
    pub customer_id: String,
    pub channel: String,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub skills: Option<BTreeMap<String, u8>>,
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub preferred_agent_id: Option<String>,
    #[serde(default)]
    pub attributes: Option<Map<String, Value>>,
}

/// `conversation.message`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    pub conversation_id: String,
    pub from: Speaker,
    pub text: String,
}

/// `conversation.switch_channel`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchChannel {
    pub conversation_id: String,
    pub channel: String,
}

/// `conversation.abandon`, `conversation.close`, `conversation.complete`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationRef {
    pub conversation_id: String,
}

/// `conversation.transfer`: exactly one of `queue` or `agent_id`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub conversation_id: String,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// `agent.login`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentLogin {
    pub agent_id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub skills: BTreeMap<String, u8>,
    #[serde(default)]
    pub capacity: Option<BTreeMap<String, u8>>,
    /// Extension: cap on all channels together (1 makes a voice call exclusive).
    #[serde(default)]
    pub max_total: Option<u8>,
}

/// Presence an agent may set for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireStatus {
    Available,
    Away,
    Offline,
}

/// `agent.status`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetStatus {
    pub status: WireStatus,
}

/// `offer.accept`, `offer.reject`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferRef {
    pub offer_id: String,
}

/// Frames with no payload (`subscribe`, `stats`, `agent.heartbeat`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// Every frame a client may send.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub enum ClientFrame {
    #[serde(rename = "conversation.open")]
    ConversationOpen(OpenConversation),
    #[serde(rename = "conversation.message")]
    ConversationMessage(PostMessage),
    #[serde(rename = "conversation.switch_channel")]
    ConversationSwitchChannel(SwitchChannel),
    #[serde(rename = "conversation.abandon")]
    ConversationAbandon(ConversationRef),
    #[serde(rename = "conversation.close")]
    ConversationClose(ConversationRef),
    #[serde(rename = "agent.login")]
    AgentLogin(AgentLogin),
    #[serde(rename = "agent.status")]
    AgentStatus(SetStatus),
    #[serde(rename = "agent.heartbeat")]
    AgentHeartbeat(Empty),
    #[serde(rename = "offer.accept")]
    OfferAccept(OfferRef),
    #[serde(rename = "offer.reject")]
    OfferReject(OfferRef),
    #[serde(rename = "conversation.complete")]
    ConversationComplete(ConversationRef),
    #[serde(rename = "conversation.transfer")]
    ConversationTransfer(Transfer),
    #[serde(rename = "subscribe")]
    Subscribe(Empty),
    #[serde(rename = "stats")]
    Stats(Empty),
}

/// Every client frame type with the roles allowed to send it.
pub const CLIENT_TYPES: &[(&str, &[Role])] = &[
    ("conversation.open", &[Role::Connector]),
    ("conversation.message", &[Role::Connector, Role::Agent]),
    ("conversation.switch_channel", &[Role::Connector]),
    ("conversation.abandon", &[Role::Connector]),
    ("conversation.close", &[Role::Connector]),
    ("agent.login", &[Role::Agent]),
    ("agent.status", &[Role::Agent]),
    ("agent.heartbeat", &[Role::Agent]),
    ("offer.accept", &[Role::Agent]),
    ("offer.reject", &[Role::Agent]),
    ("conversation.complete", &[Role::Agent]),
    ("conversation.transfer", &[Role::Agent]),
    ("subscribe", &[Role::Supervisor]),
    ("stats", &[Role::Supervisor]),
];

/// A request that could not be turned into a [`ClientFrame`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProtocolError {
    /// The request's `req_id`, when it could be read.
    pub req_id: Option<Value>,
    pub code: &'static str,
    pub message: String,
}

/// A parsed request: its frame and the `req_id` to echo.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub req_id: Option<Value>,
    pub frame: ClientFrame,
}

/// Parses one text frame sent by a client with `role`. The caller has
/// already checked the frame's size.
///
/// A well-formed frame is read in one pass (`parse_well_formed`); anything
/// that pass refuses is read again by `parse_checked`, which names the
/// exact problem. Both give the same result for every frame the first one
/// accepts (tested).
pub fn parse_client_frame(text: &str, role: Role) -> Result<Request, ProtocolError> {
    match parse_well_formed(text, role) {
        Some(request) => Ok(request),
        None => parse_checked(text, role),
    }
}

/// A frame as it comes off the wire: the `req_id`, and the rest as the
/// tagged frame (serde reads both in one pass over the text, borrowing
/// field names instead of building a map of owned strings).
#[derive(Deserialize)]
struct WireFrame {
    #[serde(default)]
    req_id: Option<Value>,
    #[serde(flatten)]
    frame: ClientFrame,
}

/// The fast path of [`parse_client_frame`]: `None` for any frame that is not
/// valid for `role`, whatever the reason.
fn parse_well_formed(text: &str, role: Role) -> Option<Request> {
    let WireFrame { req_id, frame } = serde_json::from_str(text).ok()?;
    let req_id = echoed_req_id(req_id)?;
    roles_of(frame.kind())?
        .contains(&role)
        .then_some(Request { req_id, frame })
}

/// The `req_id` to echo (none for `null` or absent); `None` when it is
/// neither a string nor a number.
fn echoed_req_id(req_id: Option<Value>) -> Option<Option<Value>> {
    match req_id {
        None | Some(Value::Null) => Some(None),
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(Some(v)),
        Some(_) => None,
    }
}

/// The roles that may send frames of type `kind`; `None` for an unknown type.
fn roles_of(kind: &str) -> Option<&'static [Role]> {
    CLIENT_TYPES
        .iter()
        .find(|(name, _)| *name == kind)
        .map(|(_, roles)| *roles)
}

/// [`parse_client_frame`] step by step, so that a refusal says what is wrong.
fn parse_checked(text: &str, role: Role) -> Result<Request, ProtocolError> {
    let err = |req_id: Option<Value>, code: &'static str, message: String| ProtocolError {
        req_id,
        code,
        message,
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| err(None, codes::MALFORMED_JSON, format!("malformed json: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(err(
            None,
            codes::BAD_FRAME,
            "a frame must be a json object".into(),
        ));
    };
    let Some(req_id) = echoed_req_id(map.remove("req_id")) else {
        return Err(err(
            None,
            codes::INVALID_FIELD,
            "req_id must be a string or a number".into(),
        ));
    };
    let kind = match map.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(err(
                req_id,
                codes::INVALID_FIELD,
                "type must be a string".into(),
            ))
        }
        None => {
            return Err(err(
                req_id,
                codes::MISSING_FIELD,
                "missing field `type`".into(),
            ))
        }
    };
    let Some(roles) = roles_of(&kind) else {
        return Err(err(
            req_id,
            codes::UNKNOWN_TYPE,
            format!("unknown frame type `{kind}`"),
        ));
    };
    if !roles.contains(&role) {
        return Err(err(
            req_id,
            codes::WRONG_ROLE,
            format!("a {} connection may not send `{kind}`", role.as_str()),
        ));
    }
    match serde_json::from_value::<ClientFrame>(Value::Object(map)) {
        Ok(frame) => Ok(Request { req_id, frame }),
        Err(e) => {
            let message = e.to_string();
            let code = if message.starts_with("missing field") {
                codes::MISSING_FIELD
            } else if message.starts_with("unknown field") {
                codes::UNKNOWN_FIELD
            } else {
                codes::INVALID_FIELD
            };
            Err(err(req_id, code, format!("{kind}: {message}")))
        }
    }
}

/// One transcript line as it appears in frames and in the REST API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptLine {
    pub from: Speaker,
    pub text: String,
    pub at_ms: u64,
    pub channel: String,
}

/// One of the customer's other conversations, in an offer's context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub conversation_id: String,
    pub channel: String,
    pub state: String,
    pub opened_at: u64,
}

/// What an agent needs to pick up a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferContext {
    pub transcript: Vec<TranscriptLine>,
    pub attributes: Map<String, Value>,
    pub previous_channels: Vec<String>,
    pub previous_agent_id: Option<String>,
    pub customer_history: Vec<HistoryEntry>,
}

/// Every frame the server sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ServerFrame {
    #[serde(rename = "ack")]
    Ack {
        req_id: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
    },
    #[serde(rename = "error")]
    Error {
        req_id: Option<Value>,
        code: &'static str,
        message: String,
    },
    #[serde(rename = "offer")]
    Offer {
        offer_id: String,
        conversation_id: String,
        customer_id: String,
        channel: String,
        queue: String,
        priority: i32,
        waited_ms: u64,
        expires_in_ms: u64,
        context: OfferContext,
    },
    /// Extension: an offer ended without being accepted; drop it from the desktop.
    #[serde(rename = "offer.ended")]
    OfferEnded {
        offer_id: String,
        conversation_id: String,
        reason: &'static str,
    },
    /// The agent's presence changed without it asking (offer timeout, grace expiry).
    #[serde(rename = "agent.status")]
    AgentStatus {
        agent_id: String,
        status: &'static str,
        reason: &'static str,
    },
    #[serde(rename = "conversation.assigned")]
    ConversationAssigned {
        conversation_id: String,
        agent_id: String,
        channel: String,
    },
    #[serde(rename = "conversation.sla")]
    ConversationSla {
        conversation_id: String,
        level: &'static str,
        channel: String,
        waited_ms: u64,
        /// Extension: `answer` or `first_response`.
        kind: &'static str,
    },
    /// A transcript line relayed to the other side of the conversation.
    #[serde(rename = "conversation.message")]
    ConversationMessage {
        conversation_id: String,
        from: Speaker,
        text: String,
        at_ms: u64,
        channel: String,
    },
    /// Extension: the conversation left routing for good (`completed` or `abandoned`).
    #[serde(rename = "conversation.ended")]
    ConversationEnded {
        conversation_id: String,
        outcome: &'static str,
    },
    /// Extension: the conversation went back to the queue (sent to the connector).
    #[serde(rename = "conversation.requeued")]
    ConversationRequeued {
        conversation_id: String,
        channel: String,
        queue: String,
        reason: &'static str,
    },
    /// One state change, for subscribed supervisors.
    #[serde(rename = "event")]
    Event {
        kind: &'static str,
        at_ms: u64,
        #[serde(flatten)]
        data: Map<String, Value>,
    },
    #[serde(rename = "stats")]
    Stats {
        req_id: Option<Value>,
        queues: Vec<Value>,
        agents: Value,
        channels: Value,
    },
}

impl ServerFrame {
    /// The frame's `type`, for the messages metric.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerFrame::Ack { .. } => "ack",
            ServerFrame::Error { .. } => "error",
            ServerFrame::Offer { .. } => "offer",
            ServerFrame::OfferEnded { .. } => "offer.ended",
            ServerFrame::AgentStatus { .. } => "agent.status",
            ServerFrame::ConversationAssigned { .. } => "conversation.assigned",
            ServerFrame::ConversationSla { .. } => "conversation.sla",
            ServerFrame::ConversationMessage { .. } => "conversation.message",
            ServerFrame::ConversationEnded { .. } => "conversation.ended",
            ServerFrame::ConversationRequeued { .. } => "conversation.requeued",
            ServerFrame::Event { .. } => "event",
            ServerFrame::Stats { .. } => "stats",
        }
    }

    /// The frame as JSON text. Serializing these types cannot fail (string
    /// keys only); should it ever, an `internal` error frame is sent instead.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","req_id":null,"code":"internal","message":"cannot encode frame: {e}"}}"#)
        })
    }

    /// An `error` frame.
    pub fn error(req_id: Option<Value>, code: &'static str, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            req_id,
            code,
            message: message.into(),
        }
    }
}

impl ClientFrame {
    /// The frame's `type`, for the messages metric.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::ConversationOpen(_) => "conversation.open",
            ClientFrame::ConversationMessage(_) => "conversation.message",
            ClientFrame::ConversationSwitchChannel(_) => "conversation.switch_channel",
            ClientFrame::ConversationAbandon(_) => "conversation.abandon",
            ClientFrame::ConversationClose(_) => "conversation.close",
            ClientFrame::AgentLogin(_) => "agent.login",
            ClientFrame::AgentStatus(_) => "agent.status",
            ClientFrame::AgentHeartbeat(_) => "agent.heartbeat",
            ClientFrame::OfferAccept(_) => "offer.accept",
            ClientFrame::OfferReject(_) => "offer.reject",
            ClientFrame::ConversationComplete(_) => "conversation.complete",
            ClientFrame::ConversationTransfer(_) => "conversation.transfer",
            ClientFrame::Subscribe(_) => "subscribe",
            ClientFrame::Stats(_) => "stats",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str, role: Role) -> &'static str {
        parse_client_frame(text, role)
            .expect_err("should be refused")
            .code
    }

    #[test]
    fn every_routing_core_code_is_a_protocol_code() {
        for code in crate::routing::CommandError::CODES {
            assert!(codes::ALL.contains(code), "{code}");
        }
    }

    #[test]
    fn parses_open_with_req_id() {
        let r = parse_client_frame(
            r#"{"type":"conversation.open","req_id":7,"customer_id":"cu-1","channel":"chat","skills":{"billing":2}}"#,
            Role::Connector,
        )
        .expect("valid frame");
        assert_eq!(r.req_id, Some(Value::from(7)));
        match r.frame {
            ClientFrame::ConversationOpen(o) => {
                assert_eq!(o.customer_id, "cu-1");
                assert_eq!(o.skills.and_then(|s| s.get("billing").copied()), Some(2));
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }

    #[test]
    fn every_bad_input_class_has_its_code() {
        assert_eq!(code("{not json", Role::Connector), codes::MALFORMED_JSON);
        assert_eq!(code("[1,2]", Role::Connector), codes::BAD_FRAME);
        assert_eq!(
            code(r#"{"req_id":1}"#, Role::Connector),
            codes::MISSING_FIELD
        );
        assert_eq!(
            code(r#"{"type":"nope"}"#, Role::Connector),
            codes::UNKNOWN_TYPE
        );
        assert_eq!(
            code(
                r#"{"type":"conversation.open","channel":"chat"}"#,
                Role::Connector
            ),
            codes::MISSING_FIELD
        );
        assert_eq!(
            code(
                r#"{"type":"conversation.open","customer_id":"a","channel":"chat","x":1}"#,
                Role::Connector
            ),
            codes::UNKNOWN_FIELD
        );
        assert_eq!(
            code(
                r#"{"type":"conversation.open","customer_id":5,"channel":"chat"}"#,
                Role::Connector
            ),
            codes::INVALID_FIELD
        );
        assert_eq!(
            code(
                r#"{"type":"offer.accept","offer_id":"o-1"}"#,
                Role::Connector
            ),
            codes::WRONG_ROLE
        );
        assert_eq!(
            code(r#"{"type":"subscribe","req_id":{"a":1}}"#, Role::Supervisor),
            codes::INVALID_FIELD
        );
    }

    #[test]
    fn req_id_is_echoed_in_errors() {
        let e = parse_client_frame(r#"{"type":"nope","req_id":"abc"}"#, Role::Agent)
            .expect_err("unknown type");
        assert_eq!(e.req_id, Some(Value::from("abc")));
    }

    #[test]
    fn every_client_type_parses_for_its_role() {
        let samples = [
            (
                r#"{"type":"conversation.message","conversation_id":"c-1","from":"customer","text":"hi"}"#,
                Role::Connector,
            ),
            (
                r#"{"type":"conversation.switch_channel","conversation_id":"c-1","channel":"voice"}"#,
                Role::Connector,
            ),
            (
                r#"{"type":"conversation.abandon","conversation_id":"c-1"}"#,
                Role::Connector,
            ),
            (
                r#"{"type":"conversation.close","conversation_id":"c-1"}"#,
                Role::Connector,
            ),
            (
                r#"{"type":"agent.login","agent_id":"a1","skills":{},"capacity":{"chat":2}}"#,
                Role::Agent,
            ),
            (r#"{"type":"agent.status","status":"away"}"#, Role::Agent),
            (r#"{"type":"agent.heartbeat"}"#, Role::Agent),
            (r#"{"type":"offer.accept","offer_id":"o-1"}"#, Role::Agent),
            (r#"{"type":"offer.reject","offer_id":"o-1"}"#, Role::Agent),
            (
                r#"{"type":"conversation.complete","conversation_id":"c-1"}"#,
                Role::Agent,
            ),
            (
                r#"{"type":"conversation.transfer","conversation_id":"c-1","queue":"general"}"#,
                Role::Agent,
            ),
            (r#"{"type":"subscribe"}"#, Role::Supervisor),
            (r#"{"type":"stats"}"#, Role::Supervisor),
        ];
        for (text, role) in samples {
            assert!(
                parse_well_formed(text, role).is_some(),
                "{text}: not on the fast path"
            );
            let r = parse_client_frame(text, role).unwrap_or_else(|e| panic!("{text}: {e}"));
            let v: Value = serde_json::from_str(text).expect("json");
            assert_eq!(Some(r.frame.kind()), v["type"].as_str());
        }
    }

    #[test]
    fn frames_the_fast_path_refuses_are_read_as_before() {
        for (text, role) in [
            // A repeated field: the last one counts, as it always did.
            (
                r#"{"type":"offer.accept","offer_id":"o-1","offer_id":"o-2"}"#,
                Role::Agent,
            ),
            // A frame type the role may not send, and a req_id of the wrong type.
            (r#"{"type":"stats","req_id":4}"#, Role::Agent),
            (r#"{"type":"stats","req_id":[4]}"#, Role::Supervisor),
        ] {
            assert_eq!(parse_well_formed(text, role), None, "{text}");
            let checked = parse_checked(text, role);
            assert_eq!(parse_client_frame(text, role), checked, "{text}");
        }
        let r = parse_client_frame(
            r#"{"type":"offer.accept","offer_id":"o-1","offer_id":"o-2"}"#,
            Role::Agent,
        )
        .expect("valid frame");
        assert_eq!(
            r.frame,
            ClientFrame::OfferAccept(OfferRef {
                offer_id: "o-2".into()
            })
        );
        // An escaped field name is read by the fast path, and alike.
        let escaped = r#"{"type":"offer.accept","offer\u005fid":"o-3"}"#;
        let fast = parse_well_formed(escaped, Role::Agent);
        assert_eq!(fast.map(Ok), Some(parse_checked(escaped, Role::Agent)));
    }

    #[test]
    fn server_frames_carry_their_type() {
        let f = ServerFrame::ConversationAssigned {
            conversation_id: "c-1".into(),
            agent_id: "a".into(),
            channel: "chat".into(),
        };
        let v: Value = serde_json::from_str(&f.to_text()).expect("json");
        assert_eq!(v["type"], "conversation.assigned");
        assert_eq!(v["agent_id"], "a");
        let mut data = Map::new();
        data.insert("conversation_id".into(), Value::from("c-1"));
        let e = ServerFrame::Event {
            kind: "assigned",
            at_ms: 5,
            data,
        };
        let v: Value = serde_json::from_str(&e.to_text()).expect("json");
        assert_eq!(v["kind"], "assigned");
        assert_eq!(v["conversation_id"], "c-1");
    }
}

#[cfg(test)]
mod fuzz {
    //! Whatever a client sends, the parser answers with a frame or a known
    //! error code, and never panics.

    use super::*;
    use proptest::prelude::*;

    const FIELDS: &[&str] = &[
        "req_id",
        "customer_id",
        "channel",
        "queue",
        "priority",
        "skills",
        "capacity",
        "attributes",
        "conversation_id",
        "offer_id",
        "agent_id",
        "from",
        "text",
        "status",
        "max_total",
        "preferred_agent_id",
        "reason",
        "colour",
    ];

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-z0-9_.-]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A frame that looks like a real one: a known or made-up `type` and a
    /// handful of known or made-up fields with values of any JSON type.
    fn frame_like() -> impl Strategy<Value = String> {
        let ty = prop_oneof![
            prop::sample::select(CLIENT_TYPES.iter().map(|(t, _)| *t).collect::<Vec<_>>())
                .prop_map(Value::from),
            json_value(),
        ];
        let fields = prop::collection::vec((prop::sample::select(FIELDS), json_value()), 0..6);
        (ty, fields, any::<bool>()).prop_map(|(ty, fields, with_type)| {
            let mut map = Map::new();
            if with_type {
                map.insert("type".into(), ty);
            }
            for (k, v) in fields {
                map.insert(k.to_string(), v);
            }
            Value::Object(map).to_string()
        })
    }

    /// One valid frame of each kind, for [`near_valid`].
    const VALID: &[&str] = &[
        r#"{"type":"conversation.open","customer_id":"cu-1","channel":"chat","queue":"general","priority":3,"skills":{"billing":2},"attributes":{"vip":true,"tags":["a"]},"preferred_agent_id":"a1"}"#,
        r#"{"type":"conversation.message","conversation_id":"c-1","from":"customer","text":"hi"}"#,
        r#"{"type":"conversation.switch_channel","conversation_id":"c-1","channel":"voice"}"#,
        r#"{"type":"conversation.abandon","conversation_id":"c-1"}"#,
        r#"{"type":"conversation.close","conversation_id":"c-1"}"#,
        r#"{"type":"agent.login","agent_id":"a1","skills":{"billing":3},"capacity":{"chat":2},"max_total":2}"#,
        r#"{"type":"agent.status","status":"away"}"#,
        r#"{"type":"agent.heartbeat"}"#,
        r#"{"type":"offer.accept","offer_id":"o-1"}"#,
        r#"{"type":"offer.reject","offer_id":"o-1"}"#,
        r#"{"type":"conversation.complete","conversation_id":"c-1"}"#,
        r#"{"type":"conversation.transfer","conversation_id":"c-1","queue":"general"}"#,
        r#"{"type":"subscribe"}"#,
        r#"{"type":"stats"}"#,
    ];

    /// A valid frame, maybe with a `req_id` of any JSON type, one field
    /// dropped, and one field (known or not) set to any value: mostly
    /// frames the fast path accepts, and near misses of them.
    fn near_valid() -> impl Strategy<Value = String> {
        (
            prop::sample::select(VALID),
            prop::option::of(json_value()),
            any::<prop::sample::Index>(),
            any::<bool>(),
            prop::option::of((prop::sample::select(FIELDS), json_value())),
        )
            .prop_map(|(text, req_id, drop, dropping, set)| {
                let mut map: Map<String, Value> = serde_json::from_str(text).expect("valid");
                if let Some(r) = req_id {
                    map.insert("req_id".into(), r);
                }
                if dropping {
                    let key = drop.get(&map.keys().cloned().collect::<Vec<_>>()).clone();
                    map.remove(&key);
                }
                if let Some((k, v)) = set {
                    map.insert(k.to_string(), v);
                }
                Value::Object(map).to_string()
            })
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![
            Just(Role::Connector),
            Just(Role::Agent),
            Just(Role::Supervisor)
        ]
    }

    #[test]
    fn every_valid_sample_takes_the_fast_path() {
        for text in VALID {
            let ok = [Role::Connector, Role::Agent, Role::Supervisor]
                .into_iter()
                .any(|role| parse_well_formed(text, role).is_some());
            assert!(ok, "{text}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn frame_like_input_gets_a_frame_or_a_known_code(text in frame_like(), role in role()) {
            if let Err(e) = parse_client_frame(&text, role) {
                prop_assert!(codes::ALL.contains(&e.code), "unknown code {} for {}", e.code, text);
                prop_assert!(!e.message.is_empty());
            }
        }

        #[test]
        fn the_fast_path_reads_a_frame_as_the_checked_path_does(
            text in prop_oneof![frame_like(), near_valid()],
            role in role(),
        ) {
            if let Some(fast) = parse_well_formed(&text, role) {
                prop_assert_eq!(Ok(fast), parse_checked(&text, role), "{}", text);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}", role in role()) {
            if let Err(e) = parse_client_frame(&text, role) {
                prop_assert!(codes::ALL.contains(&e.code));
            }
        }
    }
}
