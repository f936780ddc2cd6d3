//! Requirement groups: the two indexes that keep a routing decision from
//! scanning all agents or all waiting conversations.
//!
//! A group is one distinct `(channel, required skills, policy, aging)`. It holds
//! - the conversations waiting with exactly those requirements, in line order
//!   (priority, aging and arrival folded into one static key), and
//! - a [`ReadySet`] of the agents that qualify for it and are ready, smallest
//!   policy key first (a ring for keys that arrive in order, as
//!   `longest_idle`'s do, and a side min-heap for the rest). Entries are
//!   invalidated lazily: each carries the agent's per-channel epoch, and an
//!   entry whose epoch is behind is dropped when it reaches the front (or
//!   when the set is compacted).
//!
//! Groups never look at agent state themselves; the engine tells them.

use super::ids::{ChannelId, ConversationId, SkillId};
use super::settings::{Millis, SelectionPolicy};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// What makes two conversations interchangeable for routing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub channel: ChannelId,
    pub required: Vec<(SkillId, u8)>,
    pub policy: SelectionPolicy,
    pub aging_ms_per_point: Option<Millis>,
}

/// A ready agent's place in a group's ready set: smaller first.
///
/// `key` packs the policy's order into one integer, so an entry is 16 bytes
/// and compares with one instruction in the common case: `longest_idle` is
/// the idle-since time; `most_skilled` and `least_occupied` put their primary
/// criterion in the top 16 bits above the idle-since time (see
/// [`ReadyEntry::packed`]); `random` is the drawn key. Ties go to the lower
/// agent index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadyEntry {
    pub key: u64,
    pub agent: u32,
    pub epoch: u32,
}

impl ReadyEntry {
    /// Bits of the idle-since time kept below a primary criterion: 2^48 ms
    /// is about 8,900 years, so real clocks are never clamped.
    const IDLE_BITS: u32 = 48;

    /// The key ordering by `primary` (smaller first), then by idle-since time.
    pub fn packed(primary: u16, idle_since: Millis) -> u64 {
        let idle = idle_since.min((1 << Self::IDLE_BITS) - 1);
        ((primary as u64) << Self::IDLE_BITS) | idle
    }
}

/// The place of a waiting conversation in its group's line (smaller first).
pub type LineKey = (i64, u64, ConversationId);

/// A ring of entries with a power-of-two capacity: pushing at the back and
/// popping at the front are a masked index each, and memory is reused in
/// place (no moves), so a group's in-order entries stay where they were
/// written until they are popped or compacted.
#[derive(Debug, Clone, Default)]
struct Ring {
    /// `buf.len()` is zero or a power of two.
    buf: Vec<ReadyEntry>,
    head: u32,
    len: u32,
}

impl Ring {
    #[inline]
    fn mask(&self) -> usize {
        self.buf.len().wrapping_sub(1)
    }

    #[inline]
    fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn front(&self) -> Option<&ReadyEntry> {
        if self.len == 0 {
            return None;
        }
        self.buf.get(self.head as usize)
    }

    #[inline]
    fn back(&self) -> Option<&ReadyEntry> {
        if self.len == 0 {
            return None;
        }
        self.buf
            .get((self.head as usize + self.len as usize - 1) & self.mask())
    }

    #[inline]
    fn pop_front(&mut self) -> Option<ReadyEntry> {
        let e = self.front().copied()?;
        self.head = ((self.head as usize + 1) & self.mask()) as u32;
        self.len -= 1;
        e.into()
    }

    #[inline]
    fn push_back(&mut self, e: ReadyEntry) {
        if self.len() == self.buf.len() {
            self.grow();
        }
        let i = (self.head as usize + self.len()) & self.mask();
        if let Some(slot) = self.buf.get_mut(i) {
            *slot = e;
        }
        self.len += 1;
    }

    /// Drops entries from the front while `valid` rejects them, in a local
    /// loop (one store of the indexes at the end).
    #[inline]
    fn trim_front(&mut self, valid: impl Fn(&ReadyEntry) -> bool) {
        let mask = self.mask();
        let (mut head, mut len) = (self.head as usize, self.len);
        while len > 0 {
            match self.buf.get(head) {
                Some(e) if !valid(e) => {
                    head = (head + 1) & mask;
                    len -= 1;
                }
                _ => break,
            }
        }
        self.head = head as u32;
        self.len = len;
    }

    /// Doubles the capacity, unwrapping the entries to the front.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let cap = (self.buf.len() * 2).max(8);
        let mut buf = Vec::with_capacity(cap);
        buf.extend(self.iter().copied());
        buf.resize(cap, ReadyEntry::default());
        self.buf = buf;
        self.head = 0;
    }

    fn iter(&self) -> impl Iterator<Item = &ReadyEntry> + '_ {
        let mask = self.mask();
        (0..self.len()).filter_map(move |i| self.buf.get((self.head as usize + i) & mask))
    }

    /// Keeps the entries `keep` accepts, in order, in place.
    fn retain(&mut self, keep: impl Fn(&ReadyEntry) -> bool) {
        let (mask, head) = (self.mask(), self.head as usize);
        let mut kept = 0;
        for i in 0..self.len() {
            let e = self.buf[(head + i) & mask];
            if keep(&e) {
                self.buf[(head + kept) & mask] = e;
                kept += 1;
            }
        }
        self.len = kept as u32;
    }
}

/// The ready agents of one group, smallest key first, with lazy deletion.
///
/// Keys of `longest_idle` are publish times, which almost always arrive in
/// increasing order: those go to the back of a `Ring`, so stale entries are
/// popped from its front sequentially, at O(1) and cache-friendly. An entry
/// older than the back (rare: a re-publish with an unchanged key, or one set
/// aside and put back) goes to a small side heap. Other policies' keys arrive
/// in any order and use the heap alone.
#[derive(Debug, Clone, Default)]
pub struct ReadySet {
    fifo: Ring,
    /// `fifo`'s last entry, field by field (meaningful while `fifo` has live
    /// entries): a push compares against it, in the group's first cache line,
    /// instead of reading the ring's tail.
    back_key: u64,
    back_agent: u32,
    back_epoch: u32,
    /// Out-of-order entries (every entry for policies other than
    /// `longest_idle`); `None` while there are none, so that sizing a set
    /// without any reads no heap. Boxed so that the set's headers and the
    /// group's counters share one cache line.
    #[allow(clippy::box_collection)] // the box is the point: 8 bytes, not 24
    heap: Option<Box<BinaryHeap<Reverse<ReadyEntry>>>>,
}

impl ReadySet {
    #[inline]
    pub fn push(&mut self, e: ReadyEntry, ordered: bool) {
        if ordered && self.fits_in_order(&e) {
            self.push_back(e);
        } else {
            self.heap
                .get_or_insert_with(Default::default)
                .push(Reverse(e));
        }
    }

    /// Whether `e` can go to the back of the in-order ring.
    #[inline]
    fn fits_in_order(&self, e: &ReadyEntry) -> bool {
        self.fifo_is_empty() || self.at_or_after_back(e)
    }

    /// Whether the next in-order push has to grow the ring.
    #[inline]
    fn ring_full(&self) -> bool {
        self.fifo.len() == self.fifo.buf.len()
    }

    /// Whether `e` sorts at or after the last in-order entry (key first:
    /// publish times nearly always grow, so one compare decides).
    #[inline]
    fn at_or_after_back(&self, e: &ReadyEntry) -> bool {
        if e.key != self.back_key {
            return e.key > self.back_key;
        }
        (self.back_agent, self.back_epoch) <= (e.agent, e.epoch)
    }

    #[inline]
    fn push_back(&mut self, e: ReadyEntry) {
        self.fifo.push_back(e);
        (self.back_key, self.back_agent, self.back_epoch) = (e.key, e.agent, e.epoch);
    }

    #[inline]
    fn fifo_is_empty(&self) -> bool {
        self.fifo.is_empty()
    }

    #[inline]
    fn fifo_front(&self) -> Option<&ReadyEntry> {
        self.fifo.front()
    }

    /// Drops the first in-order entry (there is one).
    #[inline]
    fn fifo_advance(&mut self) {
        self.fifo.pop_front();
    }

    fn heap_top(&self) -> Option<&ReadyEntry> {
        self.heap
            .as_ref()
            .and_then(|h| h.peek())
            .map(|Reverse(e)| e)
    }

    /// Pops the heap's top, dropping the heap when that empties it.
    fn heap_pop(&mut self) -> Option<ReadyEntry> {
        let heap = self.heap.as_mut()?;
        let e = heap.pop().map(|Reverse(e)| e);
        if heap.is_empty() {
            self.heap = None;
        }
        e
    }

    /// The smallest entry, valid or not.
    pub fn peek(&self) -> Option<ReadyEntry> {
        match (self.fifo_front(), self.heap_top()) {
            (Some(f), Some(h)) => Some(if f <= h { *f } else { *h }),
            (Some(f), None) => Some(*f),
            (None, Some(h)) => Some(*h),
            (None, None) => None,
        }
    }

    /// Removes the smallest entry.
    pub fn pop(&mut self) -> Option<ReadyEntry> {
        let from_fifo = match (self.fifo_front(), self.heap_top()) {
            (Some(f), Some(h)) => f <= h,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if from_fifo {
            let e = self.fifo_front().copied();
            self.fifo_advance();
            e
        } else {
            self.heap_pop()
        }
    }

    /// Drops invalid entries from the top of the in-order part and of the
    /// side heap and returns the smaller valid one, leaving it in place.
    /// Stale entries are garbage wherever they sit, so each structure is
    /// trimmed on its own (a tight loop over the vector's front) before the
    /// two tops are compared.
    #[inline]
    pub fn first_valid(&mut self, valid: impl Fn(&ReadyEntry) -> bool) -> Option<ReadyEntry> {
        self.fifo.trim_front(&valid);
        if self.heap.is_none() {
            return self.fifo_front().copied();
        }
        while let Some(h) = self.heap_top() {
            if valid(h) {
                break;
            }
            self.heap_pop();
        }
        self.peek()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.fifo.len() + self.heap.as_ref().map_or(0, |h| h.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn retain(&mut self, keep: impl Fn(&ReadyEntry) -> bool) {
        self.fifo.retain(&keep);
        if let Some(b) = self.fifo.back() {
            (self.back_key, self.back_agent, self.back_epoch) = (b.key, b.agent, b.epoch);
        }
        if let Some(heap) = self.heap.as_mut() {
            let entries = std::mem::take(&mut **heap).into_vec();
            **heap = entries.into_iter().filter(|Reverse(e)| keep(e)).collect();
            if heap.is_empty() {
                self.heap = None;
            }
        }
    }
}

/// Fields are laid out by use (`repr(C)`, aligned to a cache line): the first
/// line holds what publishing an agent touches (the ready set's headers,
/// `qualified`, `ordered`), the next what an agent looking for work reads
/// (`head`); the key and the full line are read far less often.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct Group {
    pub ready: ReadySet,
    /// Agents whose skills and capacity qualify them (ready or not).
    pub qualified: u32,
    /// Whether ready keys arrive in (nearly always) increasing order: the
    /// policy is `longest_idle`.
    ordered: bool,
    /// The first of `waiting`, kept at hand so an agent looking for work
    /// reads one field per group.
    pub head: Option<LineKey>,
    pub waiting: BTreeSet<LineKey>,
    pub key: GroupKey,
}

impl Group {
    pub fn new(key: GroupKey) -> Self {
        Group {
            ordered: key.policy == SelectionPolicy::LongestIdle,
            key,
            waiting: BTreeSet::new(),
            head: None,
            ready: ReadySet::default(),
            qualified: 0,
        }
    }

    /// Whether ready keys arrive in (nearly always) increasing order.
    #[inline]
    pub fn ordered_keys(&self) -> bool {
        self.ordered
    }

    /// Adds a ready entry, compacting first if stale entries outnumber live
    /// ones. An in-order entry checks only when the ring is full, where it
    /// would otherwise grow: dropping stale entries at any other moment
    /// changes no decision, and the common push then skips the count.
    #[inline]
    pub fn push_ready(&mut self, e: ReadyEntry, is_valid: impl Fn(&ReadyEntry) -> bool) {
        if self.ordered && self.ready.fits_in_order(&e) {
            if self.ready.ring_full() {
                self.maybe_compact(is_valid);
            }
            self.ready.push_back(e);
        } else {
            self.ready.push(e, false);
            self.maybe_compact(is_valid);
        }
    }

    pub fn insert_waiting(&mut self, lk: LineKey) {
        if self.head.is_none_or(|h| lk < h) {
            self.head = Some(lk);
        }
        self.waiting.insert(lk);
    }

    pub fn remove_waiting(&mut self, lk: &LineKey) {
        self.waiting.remove(lk);
        if self.head.as_ref() == Some(lk) {
            self.head = self.waiting.first().copied();
        }
    }

    /// The line key of a conversation: with aging, the virtual arrival time
    /// `enqueued_at - priority * ms_per_point` (its order never changes while
    /// it waits, since every member ages at the same rate); without, priority
    /// first and then arrival.
    pub fn line_key(
        &self,
        priority: i32,
        enqueued_at: Millis,
        seq: u64,
        id: ConversationId,
    ) -> LineKey {
        match self.key.aging_ms_per_point {
            None => (-(priority as i64), seq, id),
            Some(ms) => (enqueued_at as i64 - priority as i64 * ms as i64, seq, id),
        }
    }

    /// Effective priority at `now`, in thousandths of a point, of the
    /// conversation with line key `lk` (for comparing heads of different groups).
    pub fn effective_priority(&self, lk: &LineKey, now: Millis) -> i64 {
        match self.key.aging_ms_per_point {
            None => -lk.0 * 1000,
            Some(ms) => ((now as i64 - lk.0) * 1000).div_euclid(ms as i64),
        }
    }

    /// Drops every entry `is_valid` rejects when stale entries outnumber live ones.
    #[inline]
    pub fn maybe_compact(&mut self, is_valid: impl Fn(&ReadyEntry) -> bool) {
        if self.ready.len() > 2 * self.qualified as usize + 64 {
            self.compact(is_valid);
        }
    }

    #[cold]
    #[inline(never)]
    fn compact(&mut self, is_valid: impl Fn(&ReadyEntry) -> bool) {
        self.ready.retain(is_valid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: u64, agent: u32) -> ReadyEntry {
        ReadyEntry {
            key,
            agent,
            epoch: 0,
        }
    }

    #[test]
    fn what_publishing_touches_fits_one_cache_line() {
        // The ready set's headers, `qualified` and `ordered` come first in
        // the `repr(C)` group; `head` must start on the next line.
        let hot = std::mem::size_of::<ReadySet>() + std::mem::size_of::<u32>() + 1;
        assert!(hot <= 64, "{hot} bytes");
        assert_eq!(std::mem::align_of::<Group>(), 64);
    }

    #[test]
    fn ready_set_pops_in_key_order_across_ring_and_heap() {
        let mut r = ReadySet::default();
        for (k, a) in [(5, 1), (7, 2), (3, 3), (7, 1), (9, 4), (1, 5)] {
            r.push(e(k, a), true);
        }
        // Ring took 5, 7/2, 9; the heap the ones that arrived out of order.
        r.retain(|x| x.agent != 4);
        r.push(e(8, 6), true);
        let mut out = Vec::new();
        while let Some(x) = r.pop() {
            out.push((x.key, x.agent));
        }
        assert_eq!(out, [(1, 5), (3, 3), (5, 1), (7, 1), (7, 2), (8, 6)]);
        assert!(r.is_empty());
    }

    #[test]
    fn spent_prefix_is_reused_without_losing_order() {
        let mut r = ReadySet::default();
        let mut next = 0u64;
        let mut expect = std::collections::VecDeque::new();
        for round in 0..50 {
            for _ in 0..(7 + round % 5) {
                r.push(e(next, next as u32), true);
                expect.push_back(next);
                next += 1;
            }
            for _ in 0..5 {
                assert_eq!(r.pop().map(|x| x.key), expect.pop_front());
            }
        }
        assert_eq!(r.len(), expect.len());
        let got: Vec<u64> = std::iter::from_fn(|| r.pop().map(|x| x.key)).collect();
        assert_eq!(got, Vec::from(expect));
    }

    #[test]
    fn first_valid_trims_stale_entries_from_both_parts() {
        let mut r = ReadySet::default();
        for (k, a) in [(1, 1), (2, 2), (3, 3)] {
            r.push(e(k, a), true);
        }
        r.push(e(0, 9), true); // out of order: the heap
        let got = r.first_valid(|x| x.agent == 3);
        assert_eq!(got, Some(e(3, 3)));
        assert_eq!(r.len(), 1);
    }
}
