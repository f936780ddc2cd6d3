//! A reply the router leaves for a session, waking the session only when
//! nothing else will.
//!
//! A session does not wait for the router: it sends a request with the
//! sending half of a slot and reads on (see `crate::api::ws`). With a
//! journal, a state-changing request's `ack` cannot leave before its record
//! is durable, and the journal's watermark wakes the session when it is; a
//! wake from the router as well would hand over a reply that must wait
//! anyway. So the router fills the slot *quietly* when the watermark is
//! still to come, and wakes the session at once when it is not: the command
//! failed, its record is durable already, there is no journal, or the
//! session asked to be woken (it must see the reply before it reads on, see
//! [`ReplySlot::filled`] with `eager`). Measured at 5 000 lifecycles/s the
//! wakes saved are within the noise (the session's thread is mostly awake
//! for other frames then); what the slot buys is that the session reads on.
//!
//! A sending half dropped unfilled (the router died with the request in its
//! mailbox) leaves [`Gone`] and wakes the session, as a closed mailbox does.
//!
//! This module must never block: each side holds the lock only to move a
//! value or a waker, and never wakes while holding it.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// The router dropped the request without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

#[derive(Debug)]
struct State<T> {
    value: Option<Result<T, Gone>>,
    waker: Option<Waker>,
    /// The session wants a wake even for a quiet fill.
    eager: bool,
}

type Shared<T> = Arc<Mutex<State<T>>>;

fn lock<T>(shared: &Shared<T>) -> MutexGuard<'_, State<T>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A new slot: the half that fills it (goes with the request) and the half
/// that takes the reply (stays with the session).
pub fn slot<T>() -> (ReplyTx<T>, ReplySlot<T>) {
    let shared = Arc::new(Mutex::new(State {
        value: None,
        waker: None,
        eager: false,
    }));
    (
        ReplyTx {
            shared: Some(Arc::clone(&shared)),
        },
        ReplySlot { shared },
    )
}

/// The router's half: fills the slot once.
#[derive(Debug)]
pub struct ReplyTx<T> {
    shared: Option<Shared<T>>,
}

impl<T> ReplyTx<T> {
    /// Leaves `value`. With `quiet`, the session is woken only if it asked
    /// to be: the caller promises that something else (the watermark) will
    /// wake it.
    pub fn fill(mut self, value: T, quiet: bool) {
        if let Some(shared) = self.shared.take() {
            put(&shared, Ok(value), quiet);
        }
    }
}

impl<T> Drop for ReplyTx<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            put(&shared, Err(Gone), false);
        }
    }
}

fn put<T>(shared: &Shared<T>, value: Result<T, Gone>, quiet: bool) {
    let waker = {
        let mut state = lock(shared);
        state.value = Some(value);
        if quiet && !state.eager {
            None
        } else {
            state.waker.take()
        }
    };
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The session's half.
#[derive(Debug)]
pub struct ReplySlot<T> {
    shared: Shared<T>,
}

impl<T> ReplySlot<T> {
    /// The reply, if it is there (it is taken: a second call gives `None`).
    pub fn try_take(&self) -> Option<Result<T, Gone>> {
        lock(&self.shared).value.take()
    }

    /// Ready once the slot is filled (the reply is left in it). Pending
    /// otherwise, with the task's waker registered; with `eager`, even a
    /// quiet fill wakes it.
    pub fn poll_filled(&self, cx: &mut Context<'_>, eager: bool) -> Poll<()> {
        let mut state = lock(&self.shared);
        if state.value.is_some() {
            return Poll::Ready(());
        }
        state.eager |= eager;
        match &mut state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Resolves once the slot is filled; see [`ReplySlot::poll_filled`].
    pub async fn filled(&self, eager: bool) {
        poll_fn(|cx| self.poll_filled(cx, eager)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        (count, waker)
    }

    fn wakes(count: &Count) -> usize {
        count.0.load(Ordering::SeqCst)
    }

    #[test]
    fn a_quiet_fill_leaves_the_reply_without_waking() {
        let (tx, slot) = slot();
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert!(slot.poll_filled(&mut cx, false).is_pending());
        tx.fill(7, true);
        assert_eq!(wakes(&count), 0);
        assert!(slot.poll_filled(&mut cx, false).is_ready());
        assert_eq!(slot.try_take(), Some(Ok(7)));
        assert_eq!(slot.try_take(), None);
    }

    #[test]
    fn a_loud_fill_wakes_the_session() {
        let (tx, slot) = slot();
        let (count, waker) = counting();
        assert!(slot
            .poll_filled(&mut Context::from_waker(&waker), false)
            .is_pending());
        tx.fill(7, false);
        assert_eq!(wakes(&count), 1);
        assert_eq!(slot.try_take(), Some(Ok(7)));
    }

    #[test]
    fn a_session_that_asked_is_woken_even_by_a_quiet_fill() {
        let (tx, slot) = slot();
        let (count, waker) = counting();
        assert!(slot
            .poll_filled(&mut Context::from_waker(&waker), true)
            .is_pending());
        tx.fill(7, true);
        assert_eq!(wakes(&count), 1);
    }

    #[test]
    fn a_request_dropped_unanswered_leaves_gone_and_wakes() {
        let (tx, slot) = slot::<u32>();
        let (count, waker) = counting();
        assert!(slot
            .poll_filled(&mut Context::from_waker(&waker), false)
            .is_pending());
        drop(tx);
        assert_eq!(wakes(&count), 1);
        assert_eq!(slot.try_take(), Some(Err(Gone)));
    }
}
