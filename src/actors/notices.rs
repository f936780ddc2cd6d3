//! Frames that report a change, held until the change is durable.
//!
//! A client acts on what it is told. A connector (the telephony or chat
//! gateway) bridges the customer to the agent named in
//! `conversation.assigned`, hangs up on `conversation.ended` and shows the
//! customer an agent's `conversation.message`. A desktop closes a
//! conversation on `conversation.ended` and drops an offer on `offer.ended`.
//! A crash must not take back what they acted on. So, with a journal, a frame
//! that reports journal record `seq` is held in its session's outbox
//! ([`crate::actors::Outbox::hold`]) until the journal's watermark covers
//! `seq`. After each commit the journal thread calls [`HeldNotices::durable`],
//! which releases what the commit covers in every outbox that holds something.
//!
//! Frames leave each outbox in the order they were made. An offer (a
//! proposal, which a restart makes again) is not held itself, but it queues
//! behind the frames held before it for the same desktop; a desktop with
//! nothing held gets it at once. A commit's frames reach an outbox
//! together, so a busy client takes them, and the acks the same commit
//! releases, in one write instead of one write each. Without a journal
//! every frame leaves at once; after a journal failure, too (the engine
//! still routes in memory; acks say `unavailable`).
//!
//! This module must never hold its lock while it releases (the journal
//! thread would make the router wait on wake-ups), never reorder one
//! client's frames, and never keep a frame after the change it reports is
//! durable.

use super::hub::SessionHandle;
use super::outbox::Outbox;
use crate::api::protocol::ServerFrame;
use crate::durability::{journal::Watermark, Seq};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// See the module docs.
#[derive(Debug)]
pub struct HeldNotices {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Every record up to this one is durable (`Seq::MAX`: all of them).
    durable: Seq,
    /// The outboxes that hold frames (each once).
    holding: Vec<Arc<Outbox>>,
}

impl HeldNotices {
    /// Frames for a journal whose records up to `durable` are on disk.
    pub fn journaled(durable: Seq) -> Self {
        HeldNotices {
            state: Mutex::new(State {
                durable,
                holding: Vec::new(),
            }),
        }
    }

    /// Without a journal: every frame leaves at once.
    pub fn unjournaled() -> Self {
        Self::journaled(Seq::MAX)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes `frame`, which reports record `seq`, to `session` once that
    /// record is durable and every frame held before it there has left.
    pub fn push(&self, session: &SessionHandle, seq: Seq, frame: &ServerFrame) {
        let (kind, text) = (frame.kind(), frame.to_text());
        // Under the lock, so that a commit publishing a new watermark either
        // sees this outbox registered or this push sees the new watermark.
        let mut state = self.state();
        if session.hold(seq, state.durable, kind, text) {
            state.holding.push(Arc::clone(session.outbox()));
        }
    }

    /// How many frames wait for the journal now, in every outbox. A sample
    /// taken while a commit releases its outboxes misses those (for
    /// microseconds): good for a gauge, not for a decision.
    pub fn held_frames(&self) -> usize {
        self.state().holding.iter().map(|o| o.held_len()).sum()
    }

    /// The journal has made every record up to `mark.seq` durable (or has
    /// failed): releases the frames that waited for them.
    pub fn durable(&self, mark: Watermark) {
        let (durable, holding) = {
            let mut state = self.state();
            let reached = if mark.failed { Seq::MAX } else { mark.seq };
            state.durable = state.durable.max(reached);
            (state.durable, std::mem::take(&mut state.holding))
        };
        // A push meanwhile to one of these outboxes queues behind what it
        // holds (so it is not registered again) and is released here or
        // kept registered below.
        let still: Vec<Arc<Outbox>> = holding
            .into_iter()
            .filter(|outbox| outbox.release(durable))
            .collect();
        if !still.is_empty() {
            self.state().holding.extend(still);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protocol::Role;
    use crate::metrics::Meters;
    use crate::routing::RoutingSettings;

    fn session(id: u64, role: Role) -> SessionHandle {
        let meters = Arc::new(Meters::new(&RoutingSettings::example()));
        SessionHandle::new(id, role, "gw".into(), Arc::new(Outbox::new(64)), meters)
    }

    fn ended(n: u64) -> ServerFrame {
        ServerFrame::ConversationEnded {
            conversation_id: format!("c-{n}"),
            outcome: "completed",
        }
    }

    fn offer(n: u64) -> ServerFrame {
        ServerFrame::OfferEnded {
            offer_id: format!("o-{n}"),
            conversation_id: format!("c-{n}"),
            reason: "test",
        }
    }

    /// The conversation ids of the frames queued to be written, in order.
    fn sent(session: &SessionHandle) -> Vec<String> {
        let mut out = Vec::new();
        session.outbox().drain(usize::MAX, |text| {
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            out.push(v["conversation_id"].as_str().unwrap_or("?").to_string());
        });
        out
    }

    fn mark(seq: Seq) -> Watermark {
        Watermark { seq, failed: false }
    }

    fn holding(notices: &HeldNotices) -> usize {
        notices.state().holding.len()
    }

    #[test]
    fn a_frame_waits_until_its_record_is_durable() {
        let notices = HeldNotices::journaled(10);
        let gw = session(1, Role::Connector);
        notices.push(&gw, 10, &ended(1));
        assert_eq!(sent(&gw), ["c-1"], "record 10 is durable already");
        notices.push(&gw, 11, &ended(2));
        notices.push(&gw, 12, &ended(3));
        assert!(sent(&gw).is_empty());
        assert!(gw.outbox().holds_up_to(11));
        assert_eq!(holding(&notices), 1, "one registration per outbox");
        assert_eq!(notices.held_frames(), 2);
        notices.durable(mark(11));
        assert_eq!(sent(&gw), ["c-2"]);
        assert_eq!(notices.held_frames(), 1);
        assert!(!gw.outbox().holds_up_to(11));
        assert!(gw.outbox().holds_up_to(12));
        notices.durable(mark(12));
        assert_eq!(sent(&gw), ["c-3"]);
        assert_eq!(holding(&notices), 0);
        assert_eq!(notices.held_frames(), 0);
    }

    #[test]
    fn a_clients_frames_leave_in_the_order_they_were_made_and_no_client_waits_for_another() {
        // Two conversation actors may push out of record order: a frame of
        // an earlier record, pushed after a later one, waits behind it.
        let notices = HeldNotices::journaled(5);
        let gw = session(1, Role::Connector);
        let other = session(2, Role::Connector);
        notices.push(&gw, 8, &ended(1));
        notices.push(&other, 6, &ended(2));
        notices.push(&gw, 5, &ended(3));
        notices.durable(mark(7));
        assert!(sent(&gw).is_empty());
        assert_eq!(sent(&other), ["c-2"], "not held up by the first client");
        notices.durable(mark(8));
        assert_eq!(sent(&gw), ["c-1", "c-3"]);
    }

    #[test]
    fn an_offer_waits_only_behind_frames_held_before_it() {
        let notices = HeldNotices::journaled(10);
        let desk = session(1, Role::Agent);
        desk.push_in_order(&offer(1));
        assert_eq!(sent(&desk), ["c-1"], "nothing held: at once");
        notices.push(&desk, 11, &ended(2));
        desk.push_in_order(&offer(3));
        assert!(sent(&desk).is_empty(), "behind the held conversation.ended");
        assert_eq!(notices.held_frames(), 2, "the offer waits too");
        notices.durable(mark(11));
        assert_eq!(sent(&desk), ["c-2", "c-3"]);
        desk.push_in_order(&offer(4));
        assert_eq!(sent(&desk), ["c-4"]);
    }

    #[test]
    fn a_commit_hands_each_outbox_all_its_frames_at_once() {
        let notices = HeldNotices::journaled(0);
        let gw = session(1, Role::Connector);
        for n in 1..=5 {
            notices.push(&gw, n, &ended(n));
        }
        notices.durable(mark(5));
        assert_eq!(sent(&gw), ["c-1", "c-2", "c-3", "c-4", "c-5"]);
    }

    #[test]
    fn without_a_journal_or_after_it_failed_frames_leave_at_once() {
        let notices = HeldNotices::unjournaled();
        let gw = session(1, Role::Connector);
        notices.push(&gw, 1_000, &ended(1));
        assert_eq!(sent(&gw), ["c-1"]);

        let notices = HeldNotices::journaled(3);
        notices.push(&gw, 4, &ended(2));
        notices.durable(Watermark {
            seq: 3,
            failed: true,
        });
        assert_eq!(sent(&gw), ["c-2"]);
        notices.push(&gw, 9, &ended(3));
        assert_eq!(sent(&gw), ["c-3"]);
    }

    #[test]
    fn a_watermark_never_moves_back() {
        let notices = HeldNotices::journaled(7);
        let gw = session(1, Role::Connector);
        notices.durable(mark(3));
        notices.push(&gw, 6, &ended(1));
        assert_eq!(sent(&gw), ["c-1"]);
    }

    #[test]
    fn a_closed_session_drops_what_it_held_and_is_forgotten() {
        let notices = HeldNotices::journaled(0);
        let gw = session(1, Role::Connector);
        notices.push(&gw, 1, &ended(1));
        gw.outbox().end();
        notices.push(&gw, 2, &ended(2));
        notices.durable(mark(2));
        assert!(sent(&gw).is_empty());
        assert_eq!(holding(&notices), 0);
    }
}
