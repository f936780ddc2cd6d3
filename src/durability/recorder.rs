//! The sequencer: gives every state change its journal sequence number and
//! says when it is durable.
//!
//! Whoever changes state (the router for core calls, a conversation actor for
//! a transcript line) takes [`Recorder::lock`], makes the change, records it
//! and lets go, so sequence numbers follow the order of the changes.
//! Recording only queues the record for the journal thread (which hands it on
//! to the snapshot replica once durable), so the lock is never held across an
//! fsync. With `durability = "snapshot"` (no journal) records go straight to
//! the replica and everything counts as durable at once. This module must never
//! block on the disk (except [`Recorder::sync`], at shutdown, which waits for
//! the last fsync) and never publish a sequence number itself.

use super::journal::{JournalMsg, Watermark};
use super::record::{Record, Seq};
use crossbeam_channel::Sender;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

/// See the module docs.
#[derive(Debug)]
pub struct Recorder {
    state: Mutex<State>,
    watermark: Option<watch::Receiver<Watermark>>,
}

#[derive(Debug)]
struct State {
    last: Seq,
    journal: Option<Sender<JournalMsg>>,
    /// Without a journal, records go straight to the snapshot replica.
    replica: Option<Sender<(Seq, Record)>>,
}

/// Why an acknowledgement cannot be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the journal cannot be written (durable up to {durable})")]
pub struct JournalFailed {
    pub durable: Seq,
}

impl Recorder {
    /// Numbers records and hands them to the snapshot replica, if any,
    /// without a journal (`durability = "snapshot"`, tests).
    pub fn unjournaled(last: Seq, replica: Option<Sender<(Seq, Record)>>) -> Recorder {
        Recorder {
            state: Mutex::new(State {
                last,
                journal: None,
                replica,
            }),
            watermark: None,
        }
    }

    /// Queues records to the journal thread `journal`, whose watermark is
    /// `watermark` (it hands them on to the replica once durable).
    pub fn journaled(
        last: Seq,
        journal: Sender<JournalMsg>,
        watermark: watch::Receiver<Watermark>,
    ) -> Recorder {
        Recorder {
            state: Mutex::new(State {
                last,
                journal: Some(journal),
                replica: None,
            }),
            watermark: Some(watermark),
        }
    }

    /// Whether records go to a journal (acks wait for it).
    pub fn is_journaled(&self) -> bool {
        self.watermark.is_some()
    }

    /// Takes the sequencer. Hold it across the state change and its record.
    pub fn lock(&self) -> Sequencer<'_> {
        Sequencer(self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The last sequence number given out.
    pub fn last_seq(&self) -> Seq {
        self.lock().last()
    }

    /// The durable watermark, or `None` without a journal.
    pub fn watermark(&self) -> Option<watch::Receiver<Watermark>> {
        self.watermark.clone()
    }

    /// Whether record `seq` is durable (always, without a journal).
    pub fn is_durable(&self, seq: Seq) -> Result<bool, JournalFailed> {
        match &self.watermark {
            None => Ok(true),
            Some(w) => {
                let mark = *w.borrow();
                // A journal thread that is gone will publish nothing more.
                let gone = w.has_changed().is_err();
                check(
                    &Watermark {
                        failed: mark.failed || gone,
                        ..mark
                    },
                    seq,
                )
            }
        }
    }

    /// Resolves once record `seq` is durable.
    pub async fn wait_durable(&self, seq: Seq) -> Result<(), JournalFailed> {
        let Some(mut w) = self.watermark.clone() else {
            return Ok(());
        };
        loop {
            if check(&w.borrow_and_update(), seq)? {
                return Ok(());
            }
            if w.changed().await.is_err() {
                // The journal thread is gone: what it published is final.
                let mark = *w.borrow();
                return if mark.seq >= seq {
                    Ok(())
                } else {
                    Err(JournalFailed { durable: mark.seq })
                };
            }
        }
    }

    /// Blocks until everything recorded so far is durable (shutdown).
    pub fn sync(&self) {
        let reply = {
            let state = self.lock();
            let Some(journal) = &state.0.journal else {
                return;
            };
            let (tx, rx) = crossbeam_channel::bounded(1);
            if journal.send(JournalMsg::Sync(tx)).is_err() {
                return;
            }
            rx
        };
        let _ = reply.recv_timeout(std::time::Duration::from_secs(10));
    }
}

/// Whether `seq` is covered by `mark`.
pub fn check(mark: &Watermark, seq: Seq) -> Result<bool, JournalFailed> {
    if mark.seq >= seq {
        Ok(true)
    } else if mark.failed {
        Err(JournalFailed { durable: mark.seq })
    } else {
        Ok(false)
    }
}

/// The held sequencer. See [`Recorder::lock`].
#[derive(Debug)]
pub struct Sequencer<'a>(MutexGuard<'a, State>);

impl Sequencer<'_> {
    /// Numbers `record` and queues it for the journal; returns its number.
    pub fn record(&mut self, record: Record) -> Seq {
        self.0.last += 1;
        let seq = self.0.last;
        if let Some(journal) = &self.0.journal {
            if journal.send(JournalMsg::Append(seq, record)).is_err() {
                tracing::error!(seq, "the journal thread is gone; record lost");
            }
        } else if let Some(replica) = &self.0.replica {
            let _ = replica.send((seq, record));
        }
        seq
    }

    /// The last sequence number given out.
    pub fn last(&self) -> Seq {
        self.0.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> (
        Recorder,
        watch::Sender<Watermark>,
        crossbeam_channel::Receiver<JournalMsg>,
    ) {
        let (mark, watermark) = watch::channel(Watermark {
            seq: 0,
            failed: false,
        });
        let (journal, queued) = crossbeam_channel::unbounded();
        (Recorder::journaled(0, journal, watermark), mark, queued)
    }

    #[tokio::test]
    async fn a_record_is_durable_once_the_watermark_covers_it() {
        let (rec, mark, queued) = recorder();
        let seq = rec.lock().record(Record::Timeout { now: 1 });
        assert_eq!(seq, 1);
        assert!(matches!(queued.try_recv(), Ok(JournalMsg::Append(1, _))));
        assert_eq!(rec.is_durable(1), Ok(false));
        let waiter = rec.wait_durable(1);
        mark.send_replace(Watermark {
            seq: 1,
            failed: false,
        });
        assert_eq!(waiter.await, Ok(()));
        assert_eq!(rec.is_durable(1), Ok(true));
    }

    #[tokio::test]
    async fn a_failed_or_vanished_journal_refuses_instead_of_hanging() {
        let (rec, mark, _queued) = recorder();
        let seq = rec.lock().record(Record::Timeout { now: 1 });
        mark.send_replace(Watermark {
            seq: 0,
            failed: true,
        });
        assert_eq!(rec.is_durable(seq), Err(JournalFailed { durable: 0 }));
        assert_eq!(
            rec.wait_durable(seq).await,
            Err(JournalFailed { durable: 0 })
        );

        let (rec, mark, _queued) = recorder();
        let seq = rec.lock().record(Record::Timeout { now: 1 });
        drop(mark);
        assert_eq!(rec.is_durable(seq), Err(JournalFailed { durable: 0 }));
        assert_eq!(
            rec.wait_durable(seq).await,
            Err(JournalFailed { durable: 0 })
        );
    }

    #[test]
    fn without_a_journal_everything_is_durable_at_once() {
        let (replica, records) = crossbeam_channel::unbounded();
        let rec = Recorder::unjournaled(41, Some(replica));
        let seq = rec.lock().record(Record::Timeout { now: 1 });
        assert_eq!(seq, 42);
        assert!(matches!(
            records.try_recv(),
            Ok((42, Record::Timeout { now: 1 }))
        ));
        assert_eq!(rec.is_durable(seq), Ok(true));
        assert!(!rec.is_journaled());
    }
}
