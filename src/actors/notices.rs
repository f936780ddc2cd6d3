//! Notices for connectors, held until the change they report is durable.
//!
//! A connector (the telephony or chat gateway) acts on what it is told:
//! `conversation.assigned` bridges the customer to an agent,
//! `conversation.ended` hangs up, an agent's `conversation.message` reaches
//! the customer. A crash must not take back what it acted on. So, with a
//! journal, a notice that reports journal record `seq` waits here until the
//! journal's watermark covers `seq`; after each commit the journal thread
//! calls [`HeldNotices::durable`], which hands every notice the commit covers
//! to its session's outbox. Notices leave in the order they were held (a
//! connector hears of a conversation's changes in order), and a commit's
//! notices reach an outbox together, so a busy connector takes them, and the
//! acks the same commit releases, in one write instead of one write each.
//!
//! Only connectors' notices wait here. An agent's frames do not: an offer is
//! a proposal (a restart makes it again) and must not wait for the disk.
//! Without a journal every notice leaves at once; after a journal failure,
//! too (the engine still routes in memory; acks say `unavailable`).
//!
//! This module must never hold its lock while pushing to an outbox (the
//! journal thread would make the router wait on a wake-up), never reorder
//! notices, and never keep one after the change it reports is durable.

use super::hub::SessionHandle;
use crate::api::protocol::ServerFrame;
use crate::durability::{journal::Watermark, Seq};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// See the module docs.
#[derive(Debug)]
pub struct HeldNotices {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Every record up to this one is durable (`Seq::MAX`: all of them).
    durable: Seq,
    held: VecDeque<Notice>,
    /// Notices taken off `held` are being pushed (outside the lock): a new
    /// one queues behind them even when its record is durable.
    releasing: bool,
}

#[derive(Debug)]
struct Notice {
    seq: Seq,
    session: SessionHandle,
    kind: &'static str,
    text: String,
}

impl HeldNotices {
    /// Notices for a journal whose records up to `durable` are on disk.
    pub fn journaled(durable: Seq) -> Self {
        Self::with_durable(durable)
    }

    /// Without a journal: every notice leaves at once.
    pub fn unjournaled() -> Self {
        Self::with_durable(Seq::MAX)
    }

    fn with_durable(durable: Seq) -> Self {
        HeldNotices {
            state: Mutex::new(State {
                durable,
                held: VecDeque::new(),
                releasing: false,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes `frame`, which reports record `seq`, to `session` once that
    /// record is durable and every notice held before it has left.
    pub fn push(&self, session: SessionHandle, seq: Seq, frame: &ServerFrame) {
        let (kind, text) = (frame.kind(), frame.to_text());
        {
            let mut state = self.state();
            if seq > state.durable || state.releasing || !state.held.is_empty() {
                state.held.push_back(Notice {
                    seq,
                    session,
                    kind,
                    text,
                });
                return;
            }
        }
        session.push_text(kind, text);
    }

    /// The journal has made every record up to `mark.seq` durable (or has
    /// failed): pushes the notices that waited for them, in order.
    pub fn durable(&self, mark: Watermark) {
        let mut due = Vec::new();
        {
            let mut state = self.state();
            let reached = if mark.failed { Seq::MAX } else { mark.seq };
            state.durable = state.durable.max(reached);
            if state.releasing {
                // Whoever is releasing takes these too (see the loop below).
                return;
            }
            take_due(&mut state, &mut due);
            if due.is_empty() {
                return;
            }
            state.releasing = true;
        }
        loop {
            for notice in due.drain(..) {
                notice.session.push_text(notice.kind, notice.text);
            }
            let mut state = self.state();
            take_due(&mut state, &mut due);
            if due.is_empty() {
                state.releasing = false;
                return;
            }
        }
    }

    /// Whether every notice of records up to `seq` has reached its outbox
    /// (a session that closes waits for it).
    pub fn released(&self, seq: Seq) -> bool {
        let state = self.state();
        state.durable >= seq && !state.releasing && state.held.iter().all(|n| n.seq > seq)
    }

    /// Notices waiting for the journal.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.state().held.len()
    }
}

/// Moves the front notices whose records are durable into `due`.
fn take_due(state: &mut State, due: &mut Vec<Notice>) {
    while state.held.front().is_some_and(|n| n.seq <= state.durable) {
        due.extend(state.held.pop_front());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::Outbox;
    use crate::api::protocol::Role;
    use crate::metrics::Meters;
    use crate::routing::RoutingSettings;
    use std::sync::Arc;

    fn session(id: u64) -> (SessionHandle, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(64));
        let meters = Arc::new(Meters::new(&RoutingSettings::example()));
        let handle = SessionHandle::new(
            id,
            Role::Connector,
            "gw".into(),
            Arc::clone(&outbox),
            meters,
        );
        (handle, outbox)
    }

    fn notice(n: u64) -> ServerFrame {
        ServerFrame::ConversationEnded {
            conversation_id: format!("c-{n}"),
            outcome: "completed",
        }
    }

    fn sent(outbox: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        outbox.drain(usize::MAX, |text| {
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            out.push(v["conversation_id"].as_str().unwrap_or("?").to_string());
        });
        out
    }

    fn mark(seq: Seq) -> Watermark {
        Watermark { seq, failed: false }
    }

    #[test]
    fn a_notice_waits_until_its_record_is_durable() {
        let notices = HeldNotices::journaled(10);
        let (gw, outbox) = session(1);
        notices.push(gw.clone(), 10, &notice(1));
        assert_eq!(sent(&outbox), ["c-1"], "record 10 is durable already");
        notices.push(gw.clone(), 11, &notice(2));
        notices.push(gw, 12, &notice(3));
        assert!(sent(&outbox).is_empty());
        assert!(notices.released(10));
        assert!(!notices.released(11));
        notices.durable(mark(11));
        assert_eq!(sent(&outbox), ["c-2"]);
        assert_eq!(notices.held(), 1);
        assert!(notices.released(11));
        assert!(!notices.released(12));
        notices.durable(mark(12));
        assert_eq!(sent(&outbox), ["c-3"]);
        assert_eq!(notices.held(), 0);
        assert!(notices.released(12));
    }

    #[test]
    fn notices_leave_in_the_order_they_were_held() {
        // A notice of an earlier record, held after a later one (two
        // conversation actors), waits behind it: nothing overtakes.
        let notices = HeldNotices::journaled(5);
        let (gw, outbox) = session(1);
        let (other, other_box) = session(2);
        notices.push(gw.clone(), 8, &notice(1));
        notices.push(other, 6, &notice(2));
        notices.push(gw.clone(), 5, &notice(3));
        notices.durable(mark(7));
        assert!(sent(&outbox).is_empty());
        assert!(sent(&other_box).is_empty());
        assert!(!notices.released(5), "record 5's notice is still held");
        notices.durable(mark(8));
        assert_eq!(sent(&outbox), ["c-1", "c-3"]);
        assert_eq!(sent(&other_box), ["c-2"]);
    }

    #[test]
    fn a_commit_hands_each_outbox_all_its_notices_at_once() {
        let notices = HeldNotices::journaled(0);
        let (gw, outbox) = session(1);
        for n in 1..=5 {
            notices.push(gw.clone(), n, &notice(n));
        }
        notices.durable(mark(5));
        assert_eq!(sent(&outbox), ["c-1", "c-2", "c-3", "c-4", "c-5"]);
    }

    #[test]
    fn without_a_journal_or_after_it_failed_notices_leave_at_once() {
        let notices = HeldNotices::unjournaled();
        let (gw, outbox) = session(1);
        notices.push(gw.clone(), 1_000, &notice(1));
        assert_eq!(sent(&outbox), ["c-1"]);

        let notices = HeldNotices::journaled(3);
        notices.push(gw.clone(), 4, &notice(2));
        notices.durable(Watermark {
            seq: 3,
            failed: true,
        });
        assert_eq!(sent(&outbox), ["c-2"]);
        notices.push(gw, 9, &notice(3));
        assert_eq!(sent(&outbox), ["c-3"]);
    }

    #[test]
    fn a_watermark_never_moves_back() {
        let notices = HeldNotices::journaled(7);
        let (gw, outbox) = session(1);
        notices.durable(mark(3));
        notices.push(gw, 6, &notice(1));
        assert_eq!(sent(&outbox), ["c-1"]);
    }
}
