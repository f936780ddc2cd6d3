//! The ledger that checks the engine while it is being loaded: every
//! conversation's life as seen from both ends (connector and agents), the
//! slots each simulated agent holds, and the latency histograms.
//!
//! It detects three kinds of fault:
//! - **lost**: an acknowledged `conversation.open` that never ends (completed
//!   or abandoned) although the run drives every conversation to an end;
//! - **duplicated**: one conversation held by (offered to or accepted by) two
//!   agents at once;
//! - **misrouted**: an offer to an agent lacking a required skill or level, or
//!   one that would put the agent over its capacity on the channel.
//!
//! Agents and connectors are separate connections, so their frames arrive in
//! no particular order relative to each other. The ledger stays sound by
//! recording every client action that frees a slot *before* the frame is
//! sent (`*_sent`): the engine can only reuse a slot after it has read that
//! frame, so any later offer is judged against an up-to-date count. An
//! overlap that the engine could explain (an offer that it ended on its own,
//! e.g. by expiry) is only a suspect until the end of the run.
//!
//! This module performs no I/O and reads no clock: instants are passed in.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Index of a simulated agent (its id is the scenario's prefix + index).
pub type AgentIx = usize;
/// Local sequence number of a conversation (its customer id ends with it).
pub type Seq = usize;

/// Where a conversation is, as far as the load generator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvState {
    /// `conversation.open` sent, no ack yet.
    Opening,
    /// The engine refused the open (error frame).
    OpenFailed,
    /// Acknowledged, not (yet) assigned on its current channel.
    Waiting,
    /// An agent's accept was acknowledged.
    Assigned,
    /// `conversation.complete` or `.abandon` sent; waiting for the ack.
    Ending,
    Completed,
    Abandoned,
}

#[derive(Debug, Clone)]
struct Holding {
    /// When the offer reached the agent: the slot is the engine's from here.
    offered_at: Instant,
    seq: Seq,
    leg: u32,
    channel: String,
    offer: String,
    accepted: bool,
}

#[derive(Debug, Clone)]
struct Conv {
    scheduled: Instant,
    mix: usize,
    channel: String,
    leg: u32,
    state: ConvState,
    id: Option<String>,
    /// Live offers on the current leg: (offer id, agent).
    offers: Vec<(String, AgentIx)>,
    holder: Option<AgentIx>,
    offered_once: bool,
    assigned_once: bool,
    /// The customer will move channel once assigned (the agent must not complete the first leg).
    will_switch: bool,
    pre_end_state: ConvState,
    /// Connector connection that opened it.
    connector: usize,
    /// Highest leg whose assignment has been reported to the connector.
    assigned_leg: Option<u32>,
}

#[derive(Debug, Clone, Default)]
struct AgentLedger {
    skills: BTreeMap<String, u8>,
    capacity: BTreeMap<String, u8>,
    holdings: Vec<Holding>,
}

/// An offer that overlapped another agent's live offer or assignment; it is
/// a duplicate unless the engine is later seen to have ended the earlier one.
#[derive(Debug, Clone)]
struct Suspect {
    earlier_offer: String,
    conversation: String,
}

/// What the agent should do with an offer it just received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferInfo {
    pub seq: Seq,
    pub leg: u32,
    /// The first leg of a conversation that will switch channel: accept, never complete.
    pub hold_for_switch: bool,
}

/// Latency histograms, in microseconds.
#[derive(Debug, Clone)]
pub struct Latencies {
    pub open_to_offer: Histogram<u64>,
    pub open_to_assigned: Histogram<u64>,
    pub ack_rtt: Histogram<u64>,
}

/// A histogram of microseconds from 1 µs to one hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            open_to_offer: histogram(),
            open_to_assigned: histogram(),
            ack_rtt: histogram(),
        }
    }
    fn reset(&mut self) {
        self.open_to_offer.reset();
        self.open_to_assigned.reset();
        self.ack_rtt.reset();
    }
}

/// Event counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub opens_sent: u64,
    pub opens_acked: u64,
    pub opens_failed: u64,
    pub offers: u64,
    pub accepts_acked: u64,
    pub rejects: u64,
    pub accept_failed: u64,
    pub offers_ended_by_engine: u64,
    pub assigned_pushes: u64,
    pub completed: u64,
    pub abandoned: u64,
    pub abandon_too_late: u64,
    pub switches: u64,
    pub messages: u64,
    pub unknown_offers: u64,
    pub misrouted_skill: u64,
    pub misrouted_capacity: u64,
    pub double_assigned: u64,
    /// Times the engine put an agent `away` on its own (offer expiry).
    pub made_away: u64,
    /// Handle times drawn by agents: how many, and their sum in ms.
    pub handle_samples: u64,
    pub handle_ms_total: f64,
    /// Slots held to the end of their conversation, and their total in ms:
    /// offer received → `conversation.complete` sent. This is the service
    /// time the engine's queue sees (the handle time plus the offer/accept
    /// round trip), the one queueing theory needs.
    pub slot_samples: u64,
    pub slot_ms_total: f64,
}

/// The shared ledger. One per run, behind a mutex held only for bookkeeping.
pub struct Book {
    convs: Vec<Conv>,
    by_id: HashMap<String, Seq>,
    /// Every offer ever seen: (conversation, agent, leg, channel).
    offers: HashMap<String, (Seq, AgentIx, u32, String)>,
    ended_offers: std::collections::HashSet<String>,
    agents: Vec<AgentLedger>,
    mix_skills: Vec<BTreeMap<String, u8>>,
    suspects: Vec<Suspect>,
    pub counts: Counts,
    /// Error frames and failed commands by code, excluding the expected races.
    pub errors: BTreeMap<String, u64>,
    pub total: Latencies,
    /// Latencies since the last [`Book::take_window`] (one ramp step).
    pub window: Latencies,
    /// The Erlang C comparison's sample, once its warm-up is over.
    pub steady: Option<Steady>,
    window_completed: u64,
    window_errors: u64,
}

/// The Erlang C comparison's sample: the conversations scheduled at or
/// after `from` (the arrivals after the warm-up). The formula is evaluated
/// at the arrival rate and slot time of these same conversations: at
/// ρ ≈ 0.8 a 1 % error in either moves `C` by about 1.5 points, more than
/// the rate's own wobble between a warm-up and the rest of a run.
#[derive(Debug, Clone)]
pub struct Steady {
    pub from: Instant,
    /// Opens scheduled in the sample.
    pub arrivals: u64,
    /// Their open→offer.
    pub waits: Histogram<u64>,
    /// Their slots (offer received → `conversation.complete` sent): how
    /// many, and the total in ms.
    pub slot_samples: u64,
    pub slot_ms_total: f64,
}

impl Steady {
    pub fn new(from: Instant) -> Steady {
        Steady {
            from,
            arrivals: 0,
            waits: histogram(),
            slot_samples: 0,
            slot_ms_total: 0.0,
        }
    }

    /// Whether a conversation scheduled at `scheduled` belongs to the sample.
    fn includes(&self, scheduled: Instant) -> bool {
        scheduled >= self.from
    }
}

/// Figures for one window (a ramp step).
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub completed: u64,
    pub errors: u64,
    pub open_to_offer_p99_ms: f64,
    pub open_to_offer_count: u64,
}

/// The verdict at the end of a run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Verdict {
    pub lost: u64,
    pub lost_examples: Vec<String>,
    pub unacked_opens: u64,
    pub duplicated: u64,
    pub duplicated_examples: Vec<String>,
    pub misrouted: u64,
    pub states: BTreeMap<String, u64>,
}

fn us(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

impl Book {
    /// The Erlang C sample, if a conversation scheduled at `scheduled`
    /// belongs to it.
    fn steady_with(&mut self, scheduled: Instant) -> Option<&mut Steady> {
        self.steady.as_mut().filter(|s| s.includes(scheduled))
    }

    /// `mix_skills[i]` are the skills required by arrival mix entry `i`.
    pub fn new(mix_skills: Vec<BTreeMap<String, u8>>) -> Book {
        Book {
            convs: Vec::new(),
            by_id: HashMap::new(),
            offers: HashMap::new(),
            ended_offers: Default::default(),
            agents: Vec::new(),
            mix_skills,
            suspects: Vec::new(),
            counts: Counts::default(),
            errors: BTreeMap::new(),
            total: Latencies::new(),
            window: Latencies::new(),
            steady: None,
            window_completed: 0,
            window_errors: 0,
        }
    }

    /// Registers agent `ix` with what its login said.
    pub fn add_agent(
        &mut self,
        ix: AgentIx,
        skills: BTreeMap<String, u8>,
        capacity: BTreeMap<String, u8>,
    ) {
        if self.agents.len() <= ix {
            self.agents.resize_with(ix + 1, AgentLedger::default);
        }
        self.agents[ix] = AgentLedger {
            skills,
            capacity,
            holdings: Vec::new(),
        };
    }

    /// A conversation is about to be opened; returns its sequence number.
    pub fn open_sent(
        &mut self,
        scheduled: Instant,
        connector: usize,
        mix: usize,
        channel: &str,
        will_switch: bool,
    ) -> Seq {
        self.counts.opens_sent += 1;
        if let Some(steady) = self.steady_with(scheduled) {
            steady.arrivals += 1;
        }
        self.convs.push(Conv {
            scheduled,
            mix,
            channel: channel.to_string(),
            leg: 0,
            state: ConvState::Opening,
            id: None,
            offers: Vec::new(),
            holder: None,
            offered_once: false,
            assigned_once: false,
            will_switch,
            pre_end_state: ConvState::Waiting,
            connector,
            assigned_leg: None,
        });
        self.convs.len() - 1
    }

    fn bind_id(&mut self, seq: Seq, id: &str) {
        if self.convs[seq].id.is_none() {
            self.convs[seq].id = Some(id.to_string());
            self.by_id.insert(id.to_string(), seq);
        }
    }

    /// The engine acknowledged the open with this conversation id.
    pub fn open_acked(&mut self, seq: Seq, id: &str) {
        self.counts.opens_acked += 1;
        self.bind_id(seq, id);
        let c = &mut self.convs[seq];
        if c.state == ConvState::Opening {
            c.state = ConvState::Waiting;
        }
    }

    /// The engine refused the open.
    pub fn open_failed(&mut self, seq: Seq, code: &str) {
        self.counts.opens_failed += 1;
        self.convs[seq].state = ConvState::OpenFailed;
        self.error(code);
    }

    /// An unexpected error (error frame, failed command, protocol problem).
    pub fn error(&mut self, code: &str) {
        *self.errors.entry(code.to_string()).or_default() += 1;
        self.window_errors += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Records an ack's round trip, measured from when the request was due.
    pub fn ack_rtt(&mut self, rtt: Duration) {
        let _ = self.total.ack_rtt.record(us(rtt));
        let _ = self.window.ack_rtt.record(us(rtt));
    }

    pub fn state(&self, seq: Seq) -> ConvState {
        self.convs[seq].state
    }

    /// Connector that opened `seq`, and whether its customer will switch channel.
    pub fn connector_of(&self, seq: Seq) -> usize {
        self.convs[seq].connector
    }

    pub fn will_switch(&self, seq: Seq) -> bool {
        self.convs[seq].will_switch
    }

    pub fn mix_of(&self, seq: Seq) -> usize {
        self.convs[seq].mix
    }

    pub fn conversation_id(&self, seq: Seq) -> Option<&str> {
        self.convs[seq].id.as_deref()
    }

    pub fn seq_of(&self, id: &str) -> Option<Seq> {
        self.by_id.get(id).copied()
    }

    /// Agent `agent` received offer `offer` of conversation `conv_id` (whose
    /// customer id maps to `seq`, when it is one of ours) on `channel`.
    /// Checks skills, capacity and overlap, and records open→offer.
    pub fn offer_received(
        &mut self,
        now: Instant,
        agent: AgentIx,
        offer: &str,
        conv_id: &str,
        seq: Option<Seq>,
        channel: &str,
    ) -> Option<OfferInfo> {
        self.counts.offers += 1;
        let Some(seq) = seq
            .or_else(|| self.seq_of(conv_id))
            .filter(|s| *s < self.convs.len())
        else {
            self.counts.unknown_offers += 1;
            self.error("unknown_offer_received");
            return None;
        };
        if agent >= self.agents.len() {
            self.error("offer_to_unknown_agent");
            return None;
        }
        self.bind_id(seq, conv_id);
        // Skills: every required skill at its level.
        let required = &self.mix_skills[self.convs[seq].mix];
        let ledger = &self.agents[agent];
        if required
            .iter()
            .any(|(s, lvl)| ledger.skills.get(s).copied().unwrap_or(0) < *lvl)
        {
            self.counts.misrouted_skill += 1;
        }
        // Capacity on the channel, counting this offer.
        let used = ledger
            .holdings
            .iter()
            .filter(|h| h.channel == channel)
            .count();
        let cap = ledger.capacity.get(channel).copied().unwrap_or(0) as usize;
        if used + 1 > cap {
            self.counts.misrouted_capacity += 1;
        }
        // Overlap with another agent's live offer or assignment.
        let c = &self.convs[seq];
        let mut earlier: Vec<String> = c
            .offers
            .iter()
            .filter(|(_, a)| *a != agent)
            .map(|(o, _)| o.clone())
            .collect();
        if let Some(h) = c.holder.filter(|h| *h != agent) {
            if let Some(hold) = self.agents[h]
                .holdings
                .iter()
                .find(|x| x.seq == seq && x.accepted)
            {
                earlier.push(hold.offer.clone());
            }
        }
        for e in earlier {
            self.suspects.push(Suspect {
                earlier_offer: e,
                conversation: conv_id.to_string(),
            });
        }
        let c = &mut self.convs[seq];
        if c.channel != channel {
            // The engine may report a switch before the connector's ack does.
            c.channel = channel.to_string();
        }
        c.offers.push((offer.to_string(), agent));
        let first = !c.offered_once;
        c.offered_once = true;
        let leg = c.leg;
        let info = OfferInfo {
            seq,
            leg,
            hold_for_switch: c.will_switch && leg == 0,
        };
        let waited = now.saturating_duration_since(c.scheduled);
        let scheduled = c.scheduled;
        self.offers
            .insert(offer.to_string(), (seq, agent, leg, channel.to_string()));
        self.agents[agent].holdings.push(Holding {
            offered_at: now,
            seq,
            leg,
            channel: channel.to_string(),
            offer: offer.to_string(),
            accepted: false,
        });
        if first {
            let _ = self.total.open_to_offer.record(us(waited));
            let _ = self.window.open_to_offer.record(us(waited));
            if let Some(steady) = self.steady_with(scheduled) {
                let _ = steady.waits.record(us(waited));
            }
        }
        Some(info)
    }

    /// Releases the slot an offer holds (the offer itself stays known).
    fn drop_offer(&mut self, agent: AgentIx, offer: &str) {
        let Some(&(seq, ..)) = self.offers.get(offer) else {
            return;
        };
        if let Some(a) = self.agents.get_mut(agent) {
            a.holdings.retain(|h| h.offer != offer);
        }
        self.convs[seq].offers.retain(|(o, _)| o != offer);
    }

    fn is_terminal(state: ConvState) -> bool {
        matches!(
            state,
            ConvState::Completed | ConvState::Abandoned | ConvState::OpenFailed
        )
    }

    /// The agent is about to send `offer.reject`.
    pub fn reject_sent(&mut self, agent: AgentIx, offer: &str) {
        self.counts.rejects += 1;
        self.drop_offer(agent, offer);
    }

    /// The engine acknowledged `offer.accept`: the agent holds the conversation.
    /// Returns `Some((connector, seq, leg))` when this is the first news of the
    /// conversation's assignment on its current leg (the connector reacts to it).
    pub fn accept_acked(
        &mut self,
        now: Instant,
        agent: AgentIx,
        offer: &str,
    ) -> Option<(usize, Seq, u32)> {
        self.counts.accepts_acked += 1;
        let (seq, _, leg, channel) = self.offers.get(offer).cloned()?;
        self.convs[seq].offers.retain(|(o, _)| o != offer);
        if leg != self.convs[seq].leg || Self::is_terminal(self.convs[seq].state) {
            // Accepted just before a switch or an end the engine processed after it.
            return None;
        }
        match self.agents[agent]
            .holdings
            .iter_mut()
            .find(|h| h.offer == offer)
        {
            Some(h) => h.accepted = true,
            // An abandon sent meanwhile released it; the engine assigned it first.
            None => self.agents[agent].holdings.push(Holding {
                offered_at: now,
                seq,
                leg,
                channel,
                offer: offer.to_string(),
                accepted: true,
            }),
        }
        let c = &mut self.convs[seq];
        if let Some(other) = c.holder.filter(|h| *h != agent) {
            let still = self.agents[other]
                .holdings
                .iter()
                .any(|h| h.seq == seq && h.accepted);
            if still {
                self.counts.double_assigned += 1;
            }
        }
        self.convs[seq].holder = Some(agent);
        self.mark_assigned(now, seq)
    }

    fn mark_assigned(&mut self, now: Instant, seq: Seq) -> Option<(usize, Seq, u32)> {
        let c = &mut self.convs[seq];
        if matches!(c.state, ConvState::Waiting | ConvState::Opening) {
            c.state = ConvState::Assigned;
        }
        if !c.assigned_once {
            c.assigned_once = true;
            let waited = now.saturating_duration_since(c.scheduled);
            let _ = self.total.open_to_assigned.record(us(waited));
            let _ = self.window.open_to_assigned.record(us(waited));
        }
        if c.assigned_leg.is_some_and(|l| l >= c.leg) {
            return None;
        }
        c.assigned_leg = Some(c.leg);
        Some((c.connector, seq, c.leg))
    }

    /// The engine refused `offer.accept` (expired, withdrawn, …): it had ended the offer.
    pub fn accept_failed(&mut self, agent: AgentIx, offer: &str) {
        self.counts.accept_failed += 1;
        self.ended_offers.insert(offer.to_string());
        self.drop_offer(agent, offer);
    }

    /// The engine told the agent an offer ended (withdrawn, expired, …).
    pub fn offer_ended(&mut self, agent: AgentIx, offer: &str) {
        self.counts.offers_ended_by_engine += 1;
        self.ended_offers.insert(offer.to_string());
        self.drop_offer(agent, offer);
    }

    /// `conversation.assigned` pushed to the connector; same return as [`Book::accept_acked`].
    pub fn assigned_pushed(&mut self, now: Instant, seq: Seq) -> Option<(usize, Seq, u32)> {
        self.counts.assigned_pushes += 1;
        if seq >= self.convs.len() || Self::is_terminal(self.convs[seq].state) {
            return None;
        }
        self.mark_assigned(now, seq)
    }

    /// Is `agent` still the holder of `seq` on leg `leg` (no switch since)?
    pub fn holds(&self, agent: AgentIx, seq: Seq, leg: u32) -> bool {
        self.agents[agent]
            .holdings
            .iter()
            .any(|h| h.seq == seq && h.leg == leg && h.accepted)
    }

    /// The agent is about to send `conversation.complete`.
    pub fn complete_sent(&mut self, now: Instant, agent: AgentIx, seq: Seq) {
        if let Some(h) = self.agents[agent]
            .holdings
            .iter()
            .find(|h| h.seq == seq && h.accepted)
        {
            let slot_ms = now.saturating_duration_since(h.offered_at).as_secs_f64() * 1000.0;
            self.counts.slot_samples += 1;
            self.counts.slot_ms_total += slot_ms;
            let scheduled = self.convs[seq].scheduled;
            if let Some(steady) = self.steady_with(scheduled) {
                steady.slot_samples += 1;
                steady.slot_ms_total += slot_ms;
            }
        }
        self.agents[agent].holdings.retain(|h| h.seq != seq);
        let c = &mut self.convs[seq];
        if !Self::is_terminal(c.state) {
            c.pre_end_state = c.state;
            c.state = ConvState::Ending;
        }
    }

    pub fn complete_acked(&mut self, seq: Seq) {
        self.counts.completed += 1;
        self.window_completed += 1;
        self.convs[seq].state = ConvState::Completed;
    }

    pub fn complete_failed(&mut self, seq: Seq, code: &str) {
        let c = &mut self.convs[seq];
        if c.state == ConvState::Ending {
            c.state = c.pre_end_state;
        }
        self.error(code);
    }

    /// The customer (connector) is about to send `conversation.abandon`.
    pub fn abandon_sent(&mut self, seq: Seq) {
        let offers: Vec<(String, AgentIx)> = std::mem::take(&mut self.convs[seq].offers);
        for (o, a) in offers {
            self.drop_offer(a, &o);
        }
        let c = &mut self.convs[seq];
        c.pre_end_state = c.state;
        c.state = ConvState::Ending;
    }

    pub fn abandon_acked(&mut self, seq: Seq) {
        self.counts.abandoned += 1;
        self.convs[seq].state = ConvState::Abandoned;
        if let Some(h) = self.convs[seq].holder.take() {
            self.agents[h].holdings.retain(|x| x.seq != seq);
        }
    }

    /// The abandon was refused; `invalid_state` is the expected race with an
    /// accept that got there first, anything else is an error.
    pub fn abandon_failed(&mut self, seq: Seq, code: &str) {
        let c = &mut self.convs[seq];
        if c.state == ConvState::Ending {
            c.state = if c.holder.is_some() {
                ConvState::Assigned
            } else {
                c.pre_end_state
            };
        }
        if code == "invalid_state" {
            self.counts.abandon_too_late += 1;
        } else {
            self.error(code);
        }
    }

    /// The customer is about to move the conversation to `channel`: the
    /// holder's slot on the old channel is released by the engine.
    pub fn switch_sent(&mut self, seq: Seq, channel: &str) {
        self.counts.switches += 1;
        let offers: Vec<(String, AgentIx)> = std::mem::take(&mut self.convs[seq].offers);
        for (o, a) in offers {
            self.drop_offer(a, &o);
        }
        let leg = self.convs[seq].leg;
        if let Some(h) = self.convs[seq].holder.take() {
            self.agents[h]
                .holdings
                .retain(|x| !(x.seq == seq && x.leg == leg));
        }
        let c = &mut self.convs[seq];
        c.leg += 1;
        c.channel = channel.to_string();
        c.state = ConvState::Waiting;
    }

    pub fn message_sent(&mut self) {
        self.counts.messages += 1;
    }

    /// Figures since the previous call, and a fresh window.
    pub fn take_window(&mut self) -> Window {
        let w = Window {
            completed: self.window_completed,
            errors: self.window_errors,
            open_to_offer_p99_ms: self.window.open_to_offer.value_at_quantile(0.99) as f64 / 1000.0,
            open_to_offer_count: self.window.open_to_offer.len(),
        };
        self.window.reset();
        self.window_completed = 0;
        self.window_errors = 0;
        w
    }

    /// Conversations whose end (complete or abandon) or open was sent but not
    /// yet answered: the run must wait for them before it judges anything.
    pub fn in_flight(&self) -> usize {
        self.convs
            .iter()
            .filter(|c| matches!(c.state, ConvState::Ending | ConvState::Opening))
            .count()
    }

    /// Conversations still to be driven to an end: (seq, state, holder, leg).
    pub fn unfinished(&self) -> Vec<(Seq, ConvState, Option<AgentIx>, u32)> {
        self.convs
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                matches!(
                    c.state,
                    ConvState::Waiting | ConvState::Assigned | ConvState::Opening
                )
            })
            .map(|(i, c)| (i, c.state, c.holder, c.leg))
            .collect()
    }

    /// The final check, once the run has driven every conversation to an end.
    pub fn verdict(&self) -> Verdict {
        let mut v = Verdict::default();
        for (seq, c) in self.convs.iter().enumerate() {
            *v.states
                .entry(format!("{:?}", c.state).to_lowercase())
                .or_default() += 1;
            match c.state {
                ConvState::Opening => v.unacked_opens += 1,
                ConvState::Waiting | ConvState::Assigned | ConvState::Ending => {
                    v.lost += 1;
                    if v.lost_examples.len() < 10 {
                        v.lost_examples.push(format!(
                            "{} (customer #{seq}, {:?}, channel {})",
                            c.id.as_deref().unwrap_or("?"),
                            c.state,
                            c.channel
                        ));
                    }
                }
                _ => {}
            }
        }
        for s in &self.suspects {
            if !self.ended_offers.contains(&s.earlier_offer) {
                v.duplicated += 1;
                if v.duplicated_examples.len() < 10 {
                    v.duplicated_examples.push(format!(
                        "{} (earlier offer {} not ended)",
                        s.conversation, s.earlier_offer
                    ));
                }
            }
        }
        v.duplicated += self.counts.double_assigned;
        v.misrouted = self.counts.misrouted_skill + self.counts.misrouted_capacity;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skills(pairs: &[(&str, u8)]) -> BTreeMap<String, u8> {
        pairs.iter().map(|(s, l)| (s.to_string(), *l)).collect()
    }

    /// Two mix entries (no skill; billing 2) and two agents: agent 0 has billing 3
    /// and chat capacity 1; agent 1 has no skills and chat capacity 2.
    fn book() -> (Book, Instant) {
        let mut b = Book::new(vec![skills(&[]), skills(&[("billing", 2)])]);
        b.add_agent(0, skills(&[("billing", 3)]), skills(&[("chat", 1)]));
        b.add_agent(1, skills(&[]), skills(&[("chat", 2)]));
        (b, Instant::now())
    }

    #[test]
    fn a_clean_lifecycle_ends_with_nothing_lost() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.open_acked(s, "c-1");
        let info = b
            .offer_received(
                t0 + Duration::from_millis(3),
                0,
                "o-1",
                "c-1",
                Some(s),
                "chat",
            )
            .expect("ours");
        assert_eq!(
            info,
            OfferInfo {
                seq: s,
                leg: 0,
                hold_for_switch: false
            }
        );
        b.accept_acked(t0 + Duration::from_millis(5), 0, "o-1");
        assert!(b.holds(0, s, 0));
        b.complete_sent(t0, 0, s);
        b.complete_acked(s);
        let v = b.verdict();
        assert_eq!(
            (v.lost, v.duplicated, v.misrouted, v.unacked_opens),
            (0, 0, 0, 0)
        );
        assert_eq!(b.total.open_to_offer.len(), 1);
        // 3 ms from the scheduled time, at 3 significant digits.
        assert!((b.total.open_to_offer.value_at_quantile(0.5) as i64 - 3000).abs() < 10);
    }

    #[test]
    fn an_acked_open_that_never_ends_is_lost() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.open_acked(s, "c-1");
        let unacked = b.open_sent(t0, 0, 0, "chat", false);
        let v = b.verdict();
        assert_eq!(v.lost, 1);
        assert!(v.lost_examples[0].starts_with("c-1"));
        assert_eq!(v.unacked_opens, 1);
        assert_eq!(b.state(unacked), ConvState::Opening);
    }

    #[test]
    fn offer_to_an_agent_without_the_skill_level_is_misrouted() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 1, "chat", false);
        b.offer_received(t0, 1, "o-1", "c-1", Some(s), "chat");
        assert_eq!(b.counts.misrouted_skill, 1);
        // Agent 0 has billing 3 ≥ 2: fine.
        let s2 = b.open_sent(t0, 0, 1, "chat", false);
        b.offer_received(t0, 0, "o-2", "c-2", Some(s2), "chat");
        assert_eq!(b.verdict().misrouted, 1);
    }

    #[test]
    fn offers_beyond_capacity_are_misrouted_and_freed_slots_count() {
        let (mut b, t0) = book();
        let a = b.open_sent(t0, 0, 0, "chat", false);
        let c = b.open_sent(t0, 0, 0, "chat", false);
        b.offer_received(t0, 0, "o-1", "c-1", Some(a), "chat");
        // Agent 0 has one chat slot and it is held by o-1.
        b.offer_received(t0, 0, "o-2", "c-2", Some(c), "chat");
        assert_eq!(b.counts.misrouted_capacity, 1);
        // A voice offer: capacity 0 there.
        let d = b.open_sent(t0, 0, 0, "voice", false);
        b.offer_received(t0, 1, "o-3", "c-3", Some(d), "voice");
        assert_eq!(b.counts.misrouted_capacity, 2);
        // After a reject is sent the slot is free again.
        let (mut b, t0) = book();
        let a = b.open_sent(t0, 0, 0, "chat", false);
        let c = b.open_sent(t0, 0, 0, "chat", false);
        b.offer_received(t0, 0, "o-1", "c-1", Some(a), "chat");
        b.reject_sent(0, "o-1");
        b.offer_received(t0, 0, "o-2", "c-2", Some(c), "chat");
        assert_eq!(b.counts.misrouted_capacity, 0);
    }

    #[test]
    fn completing_or_abandoning_frees_the_slot_before_the_next_offer() {
        let (mut b, t0) = book();
        let a = b.open_sent(t0, 0, 0, "chat", false);
        b.offer_received(t0, 0, "o-1", "c-1", Some(a), "chat");
        b.accept_acked(t0, 0, "o-1");
        b.complete_sent(t0, 0, a);
        let c = b.open_sent(t0, 0, 0, "chat", false);
        b.offer_received(t0, 0, "o-2", "c-2", Some(c), "chat");
        b.abandon_sent(c);
        let d = b.open_sent(t0, 0, 0, "chat", false);
        b.offer_received(t0, 0, "o-3", "c-3", Some(d), "chat");
        assert_eq!(b.counts.misrouted_capacity, 0);
    }

    #[test]
    fn an_offer_overlapping_another_agents_live_offer_is_duplicated() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.offer_received(t0, 0, "o-1", "c-1", Some(s), "chat");
        b.offer_received(t0, 1, "o-2", "c-1", Some(s), "chat");
        assert_eq!(b.verdict().duplicated, 1);
    }

    #[test]
    fn an_overlap_explained_by_the_engine_ending_the_offer_is_not_duplicated() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.offer_received(t0, 0, "o-1", "c-1", Some(s), "chat");
        // Expiry: the new offer overtakes the agent's notice of it.
        b.offer_received(t0, 1, "o-2", "c-1", Some(s), "chat");
        b.accept_failed(0, "o-1");
        assert_eq!(b.verdict().duplicated, 0);
    }

    #[test]
    fn two_acknowledged_accepts_are_duplicated() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.offer_received(t0, 0, "o-1", "c-1", Some(s), "chat");
        b.accept_acked(t0, 0, "o-1");
        b.offer_received(t0, 1, "o-2", "c-1", Some(s), "chat");
        b.accept_acked(t0, 1, "o-2");
        assert_eq!(b.counts.double_assigned, 1);
        // One overlap suspect plus the double assignment.
        assert_eq!(b.verdict().duplicated, 2);
    }

    #[test]
    fn a_channel_switch_moves_the_conversation_without_faults() {
        let (mut b, t0) = book();
        b.add_agent(
            0,
            skills(&[("billing", 3)]),
            skills(&[("chat", 1), ("voice", 1)]),
        );
        let s = b.open_sent(t0, 0, 0, "chat", true);
        b.open_acked(s, "c-1");
        let info = b
            .offer_received(t0, 0, "o-1", "c-1", Some(s), "chat")
            .expect("ours");
        assert!(info.hold_for_switch);
        b.accept_acked(t0, 0, "o-1");
        b.switch_sent(s, "voice");
        assert!(!b.holds(0, s, 0));
        // The previous agent is offered it again on the new channel, and someone else is not.
        let info = b
            .offer_received(t0, 0, "o-2", "c-1", None, "voice")
            .expect("ours");
        assert_eq!(info.leg, 1);
        assert!(!info.hold_for_switch);
        b.accept_acked(t0, 0, "o-2");
        assert!(b.holds(0, s, 1));
        b.complete_sent(t0, 0, s);
        b.complete_acked(s);
        let v = b.verdict();
        assert_eq!((v.lost, v.duplicated, v.misrouted), (0, 0, 0));
        assert_eq!(b.counts.switches, 1);
    }

    #[test]
    fn an_abandon_that_loses_the_race_to_an_accept_restores_the_assignment() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.open_acked(s, "c-1");
        b.offer_received(t0, 0, "o-1", "c-1", Some(s), "chat");
        b.abandon_sent(s);
        b.accept_acked(t0, 0, "o-1");
        b.abandon_failed(s, "invalid_state");
        assert_eq!(b.state(s), ConvState::Assigned);
        assert_eq!(b.counts.abandon_too_late, 1);
        assert_eq!(b.error_count(), 0);
        b.abandon_failed(s, "unknown_conversation");
        assert_eq!(b.error_count(), 1);
    }

    #[test]
    fn an_assigned_conversation_never_completed_is_lost() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.open_acked(s, "c-1");
        b.offer_received(t0, 0, "o-1", "c-1", Some(s), "chat");
        b.accept_acked(t0, 0, "o-1");
        let v = b.verdict();
        assert_eq!(v.lost, 1);
        assert!(
            v.lost_examples[0].contains("Assigned"),
            "{:?}",
            v.lost_examples
        );
    }

    #[test]
    fn a_complete_that_is_never_acknowledged_is_lost() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.open_acked(s, "c-1");
        b.offer_received(t0, 0, "o-1", "c-1", Some(s), "chat");
        b.accept_acked(t0, 0, "o-1");
        b.complete_sent(t0, 0, s);
        // Nothing left to drive, but the run must still wait for the ack.
        assert!(b.unfinished().is_empty());
        assert_eq!(b.in_flight(), 1);
        assert_eq!(b.verdict().lost, 1);
        b.complete_acked(s);
        assert_eq!(b.in_flight(), 0);
        assert_eq!(b.verdict().lost, 0);
    }

    #[test]
    fn the_slot_time_runs_from_the_offer_to_the_complete() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.open_acked(s, "c-1");
        b.offer_received(t0, 0, "o-1", "c-1", Some(s), "chat");
        b.accept_acked(t0 + Duration::from_millis(20), 0, "o-1");
        b.complete_sent(t0 + Duration::from_millis(520), 0, s);
        assert_eq!(b.counts.slot_samples, 1);
        assert!((b.counts.slot_ms_total - 520.0).abs() < 1e-6);
    }

    #[test]
    fn the_steady_sample_counts_only_conversations_scheduled_after_the_warm_up() {
        let (mut b, t0) = book();
        let warm = b.open_sent(t0, 0, 0, "chat", false);
        let t1 = t0 + Duration::from_secs(60);
        b.steady = Some(Steady::new(t1));
        let counted = b.open_sent(t1, 0, 0, "chat", false);
        b.open_acked(warm, "c-1");
        b.open_acked(counted, "c-2");
        // The warm-up conversation is offered after the sample began; it
        // still does not count.
        b.offer_received(t1, 0, "o-1", "c-1", Some(warm), "chat");
        b.offer_received(
            t1 + Duration::from_millis(30),
            1,
            "o-2",
            "c-2",
            Some(counted),
            "chat",
        );
        b.accept_acked(t1, 0, "o-1");
        b.accept_acked(t1, 1, "o-2");
        b.complete_sent(t1 + Duration::from_millis(500), 0, warm);
        b.complete_sent(t1 + Duration::from_millis(430), 1, counted);
        let steady = b.steady.as_ref().expect("sample");
        assert_eq!(steady.arrivals, 1);
        assert_eq!(steady.waits.len(), 1);
        assert!(steady.waits.equivalent(steady.waits.max(), 30_000));
        assert_eq!(steady.slot_samples, 1);
        assert!((steady.slot_ms_total - 400.0).abs() < 1e-6);
        assert_eq!(b.counts.slot_samples, 2);
    }

    #[test]
    fn a_skill_held_below_the_required_level_is_misrouted() {
        let mut b = Book::new(vec![skills(&[("billing", 4)])]);
        b.add_agent(0, skills(&[("billing", 3)]), skills(&[("chat", 5)]));
        b.add_agent(1, skills(&[("billing", 4)]), skills(&[("chat", 5)]));
        let t0 = Instant::now();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.offer_received(t0, 1, "o-1", "c-1", Some(s), "chat");
        assert_eq!(b.verdict().misrouted, 0, "level 4 meets 4");
        let s2 = b.open_sent(t0, 0, 0, "chat", false);
        b.offer_received(t0, 0, "o-2", "c-2", Some(s2), "chat");
        assert_eq!(b.counts.misrouted_skill, 1);
        assert_eq!(b.verdict().misrouted, 1);
    }

    #[test]
    fn an_offer_to_another_agent_while_one_holds_the_assignment_is_duplicated() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.open_acked(s, "c-1");
        b.offer_received(t0, 0, "o-1", "c-1", Some(s), "chat");
        b.accept_acked(t0, 0, "o-1");
        // Agent 0 holds it and nobody ended that; an offer to agent 1 is a second owner.
        b.offer_received(t0, 1, "o-2", "c-1", Some(s), "chat");
        let v = b.verdict();
        assert_eq!(v.duplicated, 1);
        assert!(v.duplicated_examples[0].contains("o-1"), "{:?}", v);
    }

    #[test]
    fn a_reoffer_after_the_first_agent_rejected_is_not_duplicated() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.open_acked(s, "c-1");
        b.offer_received(t0, 0, "o-1", "c-1", Some(s), "chat");
        b.reject_sent(0, "o-1");
        b.offer_received(t0, 1, "o-2", "c-1", Some(s), "chat");
        b.accept_acked(t0, 1, "o-2");
        b.complete_sent(t0, 1, s);
        b.complete_acked(s);
        let v = b.verdict();
        assert_eq!((v.lost, v.duplicated, v.misrouted), (0, 0, 0));
    }

    #[test]
    fn a_verdict_with_faults_fails_the_zero_thresholds() {
        let (mut b, t0) = book();
        // One of each: lost (never ends), duplicated, misrouted by capacity.
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.open_acked(s, "c-1");
        b.offer_received(t0, 0, "o-1", "c-1", Some(s), "chat");
        b.offer_received(t0, 1, "o-2", "c-1", Some(s), "chat");
        let s2 = b.open_sent(t0, 0, 0, "chat", false);
        b.open_acked(s2, "c-2");
        b.offer_received(t0, 0, "o-3", "c-2", Some(s2), "chat");
        let run = crate::report::RunResult {
            counts: b.counts.clone(),
            verdict: b.verdict(),
            ..Default::default()
        };
        let t = crate::scenario::Thresholds {
            lost: Some(0),
            duplicated: Some(0),
            misrouted: Some(0),
            ..Default::default()
        };
        let failures = crate::report::check_thresholds(&t, Some(&run), None);
        for name in ["lost", "duplicated", "misrouted"] {
            assert!(
                failures.iter().any(|f| f.starts_with(name)),
                "{name} not reported: {failures:?}"
            );
        }
    }

    #[test]
    fn offers_for_conversations_we_never_opened_are_errors() {
        let (mut b, t0) = book();
        assert!(b
            .offer_received(t0, 0, "o-9", "c-99", None, "chat")
            .is_none());
        assert_eq!(b.counts.unknown_offers, 1);
        assert_eq!(b.error_count(), 1);
    }

    #[test]
    fn the_window_resets_after_each_take() {
        let (mut b, t0) = book();
        let s = b.open_sent(t0, 0, 0, "chat", false);
        b.offer_received(
            t0 + Duration::from_millis(40),
            1,
            "o-1",
            "c-1",
            Some(s),
            "chat",
        );
        let w = b.take_window();
        assert_eq!(w.open_to_offer_count, 1);
        assert!(
            (w.open_to_offer_p99_ms - 40.0).abs() < 0.1,
            "{}",
            w.open_to_offer_p99_ms
        );
        assert_eq!(b.take_window().open_to_offer_count, 0);
        assert_eq!(b.total.open_to_offer.len(), 1);
    }
}
