//! A session's outbox: the frames actors push to one WebSocket client, and
//! the reason the server is closing that client, if it is.
//!
//! A frame that reports a change waits in the outbox's `held` queue until the
//! change's journal record is durable ([`Outbox::hold`], released by
//! [`Outbox::release`] from [`super::notices`]); a frame pushed
//! [in order](Outbox::push_in_order) (an offer) waits behind such frames, so
//! a client sees its frames in the order they were made.
//!
//! Pushing never waits: a full outbox means the client does not read, and it
//! trips the close reason [`SLOW_CONSUMER`] instead. The session loop waits
//! on [`Outbox::ready`] and writes what [`Outbox::drain`] gives it. It is
//! one small allocation per session (a lock, a queue that is empty while the
//! client is idle, one `Notify`), where a channel would hold a block of
//! slots for every idle agent. It must never block a pusher beyond its
//! short lock and never drop a frame it accepted, except when the session
//! ends.

use crate::durability::Seq;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// Close reason of a client whose outbox filled up.
pub const SLOW_CONSUMER: &str = "slow consumer: outbound buffer full";

/// The `switchboard_errors_total` code of a client closed for not reading
/// (its outbox filled up, or a write waited a whole client timeout).
pub const SLOW_CONSUMER_CODE: &str = "slow_consumer";

/// Frames queued beyond this are kept in a queue whose room is given back
/// once it is empty again.
const KEPT_ROOM: usize = 8;

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The outbox was full: the frame is dropped and the session is told to
    /// close as a slow consumer.
    Full,
    /// The session is closing or gone.
    Closed,
}

/// See the module docs.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<String>,
    /// Frames waiting for journal record `Seq` (0: for nothing but the
    /// frames ahead of them), oldest first.
    held: VecDeque<(Seq, String)>,
    reason: Option<&'static str>,
    ended: bool,
}

impl Outbox {
    /// An outbox that holds at most `capacity` frames (at least one).
    pub fn new(capacity: usize) -> Self {
        Outbox {
            state: Mutex::default(),
            notify: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame without waiting (a reply: it overtakes held frames).
    pub fn push(&self, text: String) -> Pushed {
        let mut state = self.state();
        if let Some(refused) = self.refuses(&mut state) {
            return refused;
        }
        self.queue(state, text)
    }

    /// Queues a frame behind every held one (at once when none is held).
    pub fn push_in_order(&self, text: String) -> Pushed {
        self.hold(0, 0, text).0
    }

    /// Queues a frame that reports journal record `seq`, given that records
    /// up to `durable` are on disk: it waits until [`Self::release`] covers
    /// `seq` and every frame held before it. The flag is true when this
    /// frame made the outbox hold something (whoever releases must now
    /// visit it).
    pub fn hold(&self, seq: Seq, durable: Seq, text: String) -> (Pushed, bool) {
        let mut state = self.state();
        if let Some(refused) = self.refuses(&mut state) {
            return (refused, false);
        }
        if state.held.is_empty() && seq <= durable {
            return (self.queue(state, text), false);
        }
        state.held.push_back((seq, text));
        (Pushed::Queued, state.held.len() == 1)
    }

    /// Records up to `durable` are on disk: the held frames they cover (and
    /// those waiting only behind them) are queued to be written. Returns
    /// whether some are still held.
    pub fn release(&self, durable: Seq) -> bool {
        let mut state = self.state();
        let mut moved = false;
        while state.held.front().is_some_and(|(seq, _)| *seq <= durable) {
            if let Some((_, text)) = state.held.pop_front() {
                state.frames.push_back(text);
                moved = true;
            }
        }
        let still = !state.held.is_empty();
        drop(state);
        if moved {
            self.notify.notify_one();
        }
        still
    }

    /// How many frames wait here for the journal (or behind one that does).
    pub fn held_len(&self) -> usize {
        self.state().held.len()
    }

    /// Whether a frame of a record up to `seq` (or one behind it) is held.
    pub fn holds_up_to(&self, seq: Seq) -> bool {
        self.state().held.iter().any(|(s, _)| *s <= seq)
    }

    /// Queues `text` to be written and wakes the session.
    fn queue(&self, mut state: MutexGuard<'_, State>, text: String) -> Pushed {
        state.frames.push_back(text);
        drop(state);
        self.notify.notify_one();
        Pushed::Queued
    }

    /// Why a frame cannot be queued now: the session is closing, or the
    /// outbox is full (which trips the slow-consumer reason).
    fn refuses(&self, state: &mut State) -> Option<Pushed> {
        if state.reason.is_some() || state.ended {
            return Some(Pushed::Closed);
        }
        if state.frames.len() + state.held.len() >= self.capacity {
            state.reason = Some(SLOW_CONSUMER);
            self.notify.notify_one();
            return Some(Pushed::Full);
        }
        None
    }

    /// Asks the session to close with `reason` (the first reason wins).
    pub fn trip(&self, reason: &'static str) {
        let mut state = self.state();
        if state.reason.is_none() {
            state.reason = Some(reason);
            drop(state);
            self.notify.notify_one();
        }
    }

    /// The close reason, once tripped.
    pub fn reason(&self) -> Option<&'static str> {
        self.state().reason
    }

    /// Resolves once there is a frame to write or a close reason.
    pub async fn ready(&self) {
        loop {
            {
                let state = self.state();
                if state.reason.is_some() || !state.frames.is_empty() {
                    return;
                }
            }
            // A push between the check and here leaves a permit: no wake-up is lost.
            self.notify.notified().await;
        }
    }

    /// Resolves once a close reason is set.
    pub async fn tripped(&self) {
        while self.reason().is_none() {
            self.notify.notified().await;
        }
    }

    /// Hands up to `max` queued frames, oldest first, to `write`.
    pub fn drain(&self, max: usize, mut write: impl FnMut(&str)) {
        let mut state = self.state();
        for _ in 0..max {
            let Some(text) = state.frames.pop_front() else {
                break;
            };
            write(&text);
        }
        if state.frames.is_empty() && state.frames.capacity() > KEPT_ROOM {
            state.frames = VecDeque::new();
        }
    }

    /// The session loop has ended: later pushes are refused.
    pub fn end(&self) {
        let mut state = self.state();
        state.ended = true;
        state.frames = VecDeque::new();
        state.held = VecDeque::new();
    }

    /// Whether the session is closing or gone.
    pub fn is_closed(&self) -> bool {
        let state = self.state();
        state.ended || state.reason.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn drained(outbox: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        outbox.drain(usize::MAX, |t| out.push(t.to_string()));
        out
    }

    #[tokio::test]
    async fn a_full_outbox_trips_the_slow_consumer_reason_instead_of_waiting() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.push("1".into()), Pushed::Queued);
        assert_eq!(outbox.push("2".into()), Pushed::Queued);
        assert_eq!(outbox.reason(), None);
        assert_eq!(outbox.push("3".into()), Pushed::Full);
        assert_eq!(outbox.reason(), Some(SLOW_CONSUMER));
        tokio::time::timeout(Duration::from_secs(1), outbox.tripped())
            .await
            .expect("tripped resolves at once");
        assert!(outbox.is_closed());
        // What was accepted is still there to flush; nothing more is taken.
        assert_eq!(drained(&outbox), ["1", "2"]);
        assert_eq!(outbox.push("4".into()), Pushed::Closed);
    }

    #[tokio::test]
    async fn ready_wakes_for_a_frame_pushed_before_or_while_waiting() {
        let outbox = std::sync::Arc::new(Outbox::new(8));
        outbox.push("early".into());
        tokio::time::timeout(Duration::from_secs(1), outbox.ready())
            .await
            .expect("a queued frame is ready at once");
        assert_eq!(drained(&outbox), ["early"]);
        let pusher = std::sync::Arc::clone(&outbox);
        let push = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            pusher.push("late".into());
        });
        tokio::time::timeout(Duration::from_secs(1), outbox.ready())
            .await
            .expect("a frame pushed while waiting wakes the waiter");
        push.await.expect("pusher ran");
        assert_eq!(drained(&outbox), ["late"]);
    }

    #[test]
    fn held_frames_count_toward_the_limit_and_leave_in_order() {
        let outbox = Outbox::new(3);
        assert_eq!(outbox.hold(5, 4, "a".into()), (Pushed::Queued, true));
        assert_eq!(outbox.push_in_order("b".into()), Pushed::Queued);
        assert_eq!(outbox.push("reply".into()), Pushed::Queued);
        assert_eq!(drained(&outbox), ["reply"], "a reply does not wait");
        assert!(outbox.release(4), "record 5 is not durable yet");
        assert!(drained(&outbox).is_empty());
        assert_eq!(outbox.hold(6, 4, "c".into()), (Pushed::Queued, false));
        assert_eq!(outbox.push("d".into()), Pushed::Full, "three held");
        assert_eq!(outbox.reason(), Some(SLOW_CONSUMER));

        let outbox = Outbox::new(8);
        outbox.hold(5, 4, "a".into());
        outbox.push_in_order("b".into());
        outbox.hold(7, 4, "c".into());
        assert!(outbox.holds_up_to(5));
        assert!(outbox.release(6), "c waits for record 7");
        assert_eq!(drained(&outbox), ["a", "b"]);
        assert!(!outbox.holds_up_to(6));
        assert!(!outbox.release(7));
        assert_eq!(drained(&outbox), ["c"]);
    }

    #[test]
    fn the_first_reason_wins_and_drain_keeps_order_and_limit() {
        let outbox = Outbox::new(64);
        for i in 0..20 {
            outbox.push(i.to_string());
        }
        let mut first = Vec::new();
        outbox.drain(5, |t| first.push(t.to_string()));
        assert_eq!(first, ["0", "1", "2", "3", "4"]);
        assert_eq!(drained(&outbox).len(), 15);
        outbox.trip("first");
        outbox.trip("second");
        assert_eq!(outbox.reason(), Some("first"));
        outbox.end();
        assert_eq!(outbox.push("x".into()), Pushed::Closed);
    }
}
