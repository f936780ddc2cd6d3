//! Tests of the routing rules (one per rule) and property tests over random
//! command sequences, checked after every step by a brute-force oracle.

use super::state::ConvState;
use super::*;
use proptest::prelude::*;
use std::sync::Arc;

/// A test bench owning the clock.
struct Bench {
    e: Engine,
    now: Millis,
    log: Vec<Effect>,
}

fn settings() -> RoutingSettings {
    let mut s = RoutingSettings::example();
    s.channels[0].offer_timeout_ms = 10_000; // voice
    s.channels[1].offer_timeout_ms = 10_000; // chat
    s.queues.push(QueueSettings {
        name: "billing".into(),
        skills: vec![("billing".into(), 3)],
        priority: 0,
        policy: SelectionPolicy::LongestIdle,
        aging_ms_per_point: None,
        widening: vec![
            WideningStep {
                after_ms: 30_000,
                lower_levels_by: 1,
                drop_skills: vec![],
            },
            WideningStep {
                after_ms: 60_000,
                lower_levels_by: 0,
                drop_skills: vec!["billing".into()],
            },
        ],
        overflow_queue: Some("general".into()),
        channels: vec![],
        sla: SlaOverride::default(),
    });
    s.queues.push(QueueSettings {
        name: "support".into(),
        skills: vec![("support".into(), 1)],
        priority: 0,
        policy: SelectionPolicy::MostSkilled,
        aging_ms_per_point: None,
        widening: vec![],
        overflow_queue: None,
        channels: vec![],
        sla: SlaOverride::default(),
    });
    s
}

fn id(s: &str) -> AgentId {
    Arc::from(s)
}

fn sk(v: &[(&str, u8)]) -> Vec<(String, u8)> {
    v.iter().map(|(n, l)| (n.to_string(), *l)).collect()
}

impl Bench {
    fn new() -> Self {
        Self::with(settings())
    }
    fn with(s: RoutingSettings) -> Self {
        Bench {
            e: Engine::new(s).expect("valid settings"),
            now: 1_000_000,
            log: Vec::new(),
        }
    }
    fn cmd(&mut self, c: Command) -> Result<Reply, CommandError> {
        let r = self.e.handle(self.now, c);
        self.drain();
        r
    }
    fn drain(&mut self) {
        while let Some(e) = self.e.poll_effect() {
            self.log.push(e);
        }
    }
    fn login(&mut self, agent: &str, skills: &[(&str, u8)], cap: &[(&str, u8)]) {
        let capacity = Some(cap.iter().map(|(c, n)| (c.to_string(), *n)).collect());
        self.cmd(Command::AgentLogin {
            agent: id(agent),
            skills: sk(skills),
            capacity,
            max_total: None,
        })
        .unwrap();
    }
    fn open(&mut self, channel: &str, queue: &str, priority: i32) -> ConversationId {
        self.open_full(channel, queue, &[], Some(priority), None)
    }
    fn open_full(
        &mut self,
        channel: &str,
        queue: &str,
        skills: &[(&str, u8)],
        priority: Option<i32>,
        preferred: Option<&str>,
    ) -> ConversationId {
        match self.cmd(Command::Open {
            channel: channel.into(),
            queue: Some(queue.into()),
            skills: sk(skills),
            priority,
            preferred_agent: preferred.map(id),
        }) {
            Ok(Reply::Opened(c)) => c,
            other => panic!("open failed: {other:?}"),
        }
    }
    /// Moves the clock to `now + ms`, firing every deadline on the way at its own time.
    fn advance(&mut self, ms: Millis) {
        let target = self.now + ms;
        while let Some(t) = self.e.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.e.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
        self.e.handle_timeout(self.now);
        self.drain();
    }
    fn take_log(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.log)
    }
    /// Offers made since the last call: (offer, conversation, agent).
    fn offers(&mut self) -> Vec<(OfferId, ConversationId, String)> {
        self.take_log()
            .into_iter()
            .filter_map(|e| match e {
                Effect::OfferMade {
                    offer,
                    conversation,
                    agent,
                    ..
                } => Some((offer, conversation, agent.to_string())),
                _ => None,
            })
            .collect()
    }
    fn accept(&mut self, agent: &str, offer: OfferId) {
        self.cmd(Command::Accept {
            agent: id(agent),
            offer,
        })
        .unwrap();
    }
    fn complete(&mut self, agent: &str, c: ConversationId) {
        self.cmd(Command::Complete {
            agent: id(agent),
            conversation: c,
        })
        .unwrap();
    }
    fn state(&self, c: ConversationId) -> Option<ConvState> {
        self.e.conversations.get(&c).map(|c| c.state)
    }
}

// ----- one test per rule -----------------------------------------------------

#[test]
fn eligible_requires_every_skill_at_level() {
    let mut b = Bench::new();
    b.login("low", &[("billing", 2)], &[("voice", 1)]);
    b.login("none", &[], &[("voice", 1)]);
    let c = b.open("voice", "billing", 0);
    assert!(b.offers().is_empty(), "nobody holds billing ≥ 3");
    b.login("high", &[("billing", 4), ("spanish", 2)], &[("voice", 1)]);
    assert_eq!(b.offers(), vec![(OfferId(1), c, "high".into())]);
}

#[test]
fn conversation_skills_add_to_queue_requirements() {
    let mut b = Bench::new();
    b.login("en", &[("billing", 3)], &[("voice", 1)]);
    let c = b.open_full("voice", "billing", &[("spanish", 2)], None, None);
    assert!(b.offers().is_empty());
    b.login("es", &[("billing", 3), ("spanish", 2)], &[("voice", 1)]);
    assert_eq!(b.offers()[0].1, c);
    assert_eq!(b.offers().len(), 0);
}

#[test]
fn capacity_is_per_channel_and_offers_hold_slots() {
    let mut b = Bench::new();
    b.login("a", &[], &[("chat", 2), ("voice", 1)]);
    let c1 = b.open("chat", "general", 0);
    let c2 = b.open("chat", "general", 0);
    let c3 = b.open("chat", "general", 0);
    let offers = b.offers();
    assert_eq!(
        offers.iter().map(|o| o.1).collect::<Vec<_>>(),
        vec![c1, c2],
        "two chat slots, offers hold them"
    );
    let v = b.open("voice", "general", 0);
    assert_eq!(b.offers()[0].1, v, "voice slot is independent of chat");
    b.accept("a", offers[0].0);
    b.complete("a", c1);
    assert_eq!(
        b.offers()[0].1,
        c3,
        "completing frees the slot for the next chat"
    );
}

#[test]
fn total_capacity_makes_voice_exclusive() {
    let mut b = Bench::new();
    b.cmd(Command::AgentLogin {
        agent: id("a"),
        skills: vec![],
        capacity: Some(vec![("chat".into(), 3), ("voice".into(), 1)]),
        max_total: Some(1),
    })
    .unwrap();
    let v = b.open("voice", "general", 0);
    let o = b.offers();
    assert_eq!(o[0].1, v);
    let c = b.open("chat", "general", 0);
    assert!(
        b.offers().is_empty(),
        "the total of 1 is used by the voice offer"
    );
    b.accept("a", o[0].0);
    b.complete("a", v);
    assert_eq!(b.offers()[0].1, c);
}

#[test]
fn priority_first_then_arrival_order() {
    let mut b = Bench::new();
    let low1 = b.open("voice", "general", 0);
    b.advance(10);
    let high = b.open("voice", "general", 5);
    b.advance(10);
    let low2 = b.open("voice", "general", 0);
    let mut order = Vec::new();
    b.login("a", &[], &[("voice", 1)]);
    for _ in 0..3 {
        let (o, c, _) = b.offers()[0].clone();
        order.push(c);
        b.accept("a", o);
        b.complete("a", c);
    }
    assert_eq!(order, vec![high, low1, low2]);
}

#[test]
fn aging_lets_a_long_wait_overtake_higher_priority() {
    let mut s = settings();
    s.queues[0].aging_ms_per_point = Some(1_000); // +1 point per second
    let mut b = Bench::with(s);
    let old = b.open("voice", "general", 0);
    b.advance(10_000); // old now has effective priority 10
    let fresh = b.open("voice", "general", 5);
    b.login("a", &[], &[("voice", 1)]);
    let (o, c, _) = b.offers()[0].clone();
    assert_eq!(c, old, "10 points of age beat 5 of priority");
    b.accept("a", o);
    b.complete("a", c);
    assert_eq!(b.offers()[0].1, fresh);
}

#[test]
fn aging_across_queues_compares_effective_priority() {
    let mut s = settings();
    s.queues[0].aging_ms_per_point = Some(1_000);
    let mut b = Bench::with(s);
    let aged = b.open("voice", "general", 0);
    b.advance(3_000);
    let prio = b.open("voice", "support", 2); // no aging: stays at 2
    b.login("a", &[("support", 1)], &[("voice", 1)]);
    let (o, c, _) = b.offers()[0].clone();
    assert_eq!(c, aged, "3 points of age beat 2 of priority");
    b.accept("a", o);
    b.complete("a", c);
    assert_eq!(b.offers()[0].1, prio);
}

#[test]
fn longest_idle_picks_the_agent_idle_longest() {
    let mut b = Bench::new();
    b.login("first", &[], &[("voice", 1)]);
    b.advance(1_000);
    b.login("second", &[], &[("voice", 1)]);
    b.open("voice", "general", 0);
    assert_eq!(b.offers()[0].2, "first");
    b.open("voice", "general", 0);
    assert_eq!(b.offers()[0].2, "second");
}

#[test]
fn longest_idle_counts_from_the_last_freed_slot() {
    let mut b = Bench::new();
    b.login("a", &[], &[("voice", 1)]);
    b.login("b", &[], &[("voice", 1)]);
    let c = b.open("voice", "general", 0);
    let (o, _, who) = b.offers()[0].clone();
    assert_eq!(who, "a");
    b.advance(500);
    b.accept("a", o);
    b.complete("a", c);
    b.open("voice", "general", 0);
    assert_eq!(
        b.offers()[0].2,
        "b",
        "a just finished; b has been idle longer"
    );
}

#[test]
fn most_skilled_picks_the_highest_level() {
    let mut b = Bench::new();
    b.login("junior", &[("support", 2)], &[("voice", 1)]);
    b.login("senior", &[("support", 7)], &[("voice", 1)]);
    b.login("mid", &[("support", 5)], &[("voice", 1)]);
    b.open("voice", "support", 0);
    assert_eq!(b.offers()[0].2, "senior");
    b.open("voice", "support", 0);
    assert_eq!(b.offers()[0].2, "mid");
}

#[test]
fn least_occupied_spreads_chats() {
    let mut s = settings();
    s.queues[0].policy = SelectionPolicy::LeastOccupied;
    let mut b = Bench::with(s);
    b.login("a", &[], &[("chat", 3)]);
    b.login("b", &[], &[("chat", 3)]);
    let who: Vec<String> = (0..4)
        .map(|_| {
            b.open("chat", "general", 0);
            b.offers()[0].2.clone()
        })
        .collect();
    assert_eq!(who, vec!["a", "b", "a", "b"]);
}

#[test]
fn random_policy_is_seeded_and_spreads() {
    let run = |seed: u64| {
        let mut s = settings();
        s.queues[0].policy = SelectionPolicy::Random;
        s.seed = seed;
        let mut b = Bench::with(s);
        for i in 0..8 {
            b.login(&format!("a{i}"), &[], &[("voice", 1)]);
        }
        let mut who = Vec::new();
        for _ in 0..40 {
            let c = b.open("voice", "general", 0);
            let (o, _, a) = b.offers()[0].clone();
            b.accept(&a, o);
            b.complete(&a, c);
            who.push(a);
        }
        who
    };
    assert_eq!(run(7), run(7), "same seed, same choices");
    assert_ne!(run(7), run(8), "another seed, other choices");
    let distinct: std::collections::HashSet<_> = run(7).into_iter().collect();
    assert!(
        distinct.len() >= 5,
        "random spreads over agents: {distinct:?}"
    );
}

#[test]
fn offer_timeout_sets_agent_away_and_reroutes_in_place() {
    let mut b = Bench::new();
    b.login("sleepy", &[], &[("voice", 1)]);
    let first = b.open("voice", "general", 0);
    b.advance(1);
    let second = b.open("voice", "general", 0);
    assert_eq!(b.offers()[0].1, first);
    b.advance(9_998);
    assert!(b.offers().is_empty(), "not yet expired");
    b.advance(1);
    let log = b.take_log();
    assert!(log.iter().any(|e| matches!(
        e,
        Effect::OfferEnded {
            reason: OfferEnd::Expired,
            ..
        }
    )));
    assert!(log.iter().any(|e| matches!(
        e,
        Effect::AgentStatusChanged {
            status: AgentStatus::Away,
            reason: "offer_timeout",
            ..
        }
    )));
    assert_eq!(b.e.agent_status("sleepy"), Some(AgentStatus::Away));
    b.login("awake", &[], &[("voice", 1)]);
    assert_eq!(
        b.offers()[0].1,
        first,
        "the expired conversation kept its place ahead of the second"
    );
    let _ = second;
}

#[test]
fn reject_goes_to_another_agent_first_then_back_after_cooldown() {
    let mut b = Bench::new();
    b.login("a", &[], &[("voice", 1)]);
    let c = b.open("voice", "general", 0);
    let (o, _, _) = b.offers()[0].clone();
    b.cmd(Command::Reject {
        agent: id("a"),
        offer: o,
    })
    .unwrap();
    assert!(
        b.offers().is_empty(),
        "a declined and is cooling down; nobody else"
    );
    b.login("b", &[], &[("voice", 1)]);
    let (o2, c2, who) = b.offers()[0].clone();
    assert_eq!((c2, who.as_str()), (c, "b"));
    b.cmd(Command::Reject {
        agent: id("b"),
        offer: o2,
    })
    .unwrap();
    assert!(b.offers().is_empty(), "both cooling down");
    b.advance(10_000);
    let o3 = b.offers();
    assert_eq!(
        o3.len(),
        1,
        "after the cooldown a decliner may take it again: {o3:?}"
    );
    assert_eq!(o3[0].1, c);
}

#[test]
fn decliner_past_cooldown_only_when_nobody_else() {
    for b_finishes_early in [true, false] {
        let mut b = Bench::new();
        b.login("a", &[], &[("voice", 1)]);
        b.advance(10);
        b.login("b", &[], &[("voice", 1)]);
        let c1 = b.open("voice", "general", 0);
        let c2 = b.open("voice", "general", 0);
        let offers = b.offers();
        assert_eq!(offers[0].2, "a");
        assert_eq!(offers[1].2, "b");
        b.accept("b", offers[1].0);
        b.cmd(Command::Reject {
            agent: id("a"),
            offer: offers[0].0,
        })
        .unwrap();
        assert!(b.offers().is_empty(), "a is cooling, b is busy");
        b.advance(5_000);
        if b_finishes_early {
            b.complete("b", c2);
            assert_eq!(
                b.offers(),
                vec![(OfferId(3), c1, "b".into())],
                "someone else first"
            );
        } else {
            assert!(b.offers().is_empty());
            b.advance(5_000);
            assert_eq!(
                b.offers(),
                vec![(OfferId(3), c1, "a".into())],
                "nobody else: back to a after the cooldown"
            );
        }
    }
}

#[test]
fn abandon_while_waiting_and_while_offered() {
    let mut b = Bench::new();
    let waiting = b.open("voice", "general", 0);
    b.cmd(Command::Abandon {
        conversation: waiting,
    })
    .unwrap();
    assert!(b.take_log().iter().any(|e| matches!(
        e,
        Effect::Ended {
            outcome: Outcome::Abandoned,
            ..
        }
    )));
    assert_eq!(b.state(waiting), None);
    b.login("a", &[], &[("voice", 1)]);
    assert!(b.offers().is_empty(), "the abandoned one is gone");
    let offered = b.open("voice", "general", 0);
    b.offers();
    let next = b.open("voice", "general", 0);
    b.cmd(Command::Abandon {
        conversation: offered,
    })
    .unwrap();
    let log = b.take_log();
    assert!(log.iter().any(|e| matches!(
        e,
        Effect::OfferEnded {
            reason: OfferEnd::Withdrawn,
            ..
        }
    )));
    assert!(
        log.iter()
            .any(|e| matches!(e, Effect::OfferMade { conversation, .. } if *conversation == next)),
        "the freed slot takes the next one"
    );
    assert_eq!(
        b.cmd(Command::Abandon {
            conversation: offered
        }),
        Err(CommandError::UnknownConversation(offered))
    );
}

#[test]
fn preferred_agent_is_waited_for_within_the_window() {
    let mut b = Bench::new();
    b.login("pref", &[], &[("voice", 1)]);
    b.login("other", &[], &[("voice", 1)]);
    b.advance(10);
    // pref is busy with a first call
    let busy = b.open_full("voice", "general", &[], None, Some("pref"));
    let (o, _, who) = b.offers()[0].clone();
    assert_eq!(who, "pref");
    b.accept("pref", o);
    let c = b.open_full("voice", "general", &[], None, Some("pref"));
    let o = b.offers();
    assert!(
        o.is_empty(),
        "other is idle but the window holds it for pref: {o:?}"
    );
    b.advance(5_000);
    b.complete("pref", busy);
    assert_eq!(b.offers(), vec![(OfferId(2), c, "pref".into())]);
    b.accept("pref", OfferId(2));
    // window expiry: pref busy again, conversation goes to other after 15s
    let c2 = b.open_full("voice", "general", &[], None, Some("pref"));
    assert!(b.offers().is_empty());
    b.advance(14_999);
    assert!(b.offers().is_empty());
    b.advance(1);
    assert_eq!(b.offers()[0].1, c2);
}

#[test]
fn widening_lowers_levels_then_drops_skills() {
    let mut b = Bench::new();
    b.login("two", &[("billing", 2)], &[("voice", 1)]);
    let c = b.open("voice", "billing", 0);
    assert!(b.offers().is_empty());
    b.advance(29_999);
    assert!(b.offers().is_empty());
    b.advance(1);
    let (o, _, who) = b.offers()[0].clone();
    assert_eq!(who, "two", "after 30s billing ≥ 2 is enough");
    b.accept("two", o);
    let c2 = b.open("voice", "billing", 0);
    b.login("nobilling", &[], &[("voice", 1)]);
    assert!(b.offers().is_empty());
    b.advance(60_000);
    assert_eq!(b.offers()[0].1, c2, "after 60s billing is dropped");
    let _ = c;
}

#[test]
fn sla_warning_and_breach_fire_at_the_right_millisecond() {
    let mut b = Bench::new();
    let c = b.open("voice", "general", 0); // answer target 20s, warning 0.8
    b.advance(15_999);
    assert!(!b.take_log().iter().any(|e| matches!(e, Effect::Sla { .. })));
    b.advance(1);
    let log = b.take_log();
    assert!(log.iter().any(|e| matches!(e, Effect::Sla { conversation, level: SlaLevel::Warning, kind: SlaKind::Answer, waited_ms: 16_000, .. } if *conversation == c)), "{log:?}");
    b.advance(3_999);
    assert!(b.take_log().is_empty());
    b.advance(1);
    assert!(b.take_log().iter().any(|e| matches!(
        e,
        Effect::Sla {
            level: SlaLevel::Breach,
            waited_ms: 20_000,
            ..
        }
    )));
}

#[test]
fn sla_does_not_fire_once_answered() {
    let mut b = Bench::new();
    b.login("a", &[], &[("voice", 1)]);
    b.open("voice", "general", 0);
    let (o, _, _) = b.offers()[0].clone();
    b.advance(1_000);
    b.accept("a", o);
    b.advance(60_000);
    assert!(!b.take_log().iter().any(|e| matches!(e, Effect::Sla { .. })));
}

#[test]
fn first_response_clock_for_email() {
    let mut b = Bench::new();
    b.login("a", &[], &[("email", 5)]);
    let c = b.open("email", "general", 0);
    let (o, _, _) = b.offers()[0].clone();
    b.accept("a", o);
    b.advance(2_880_000);
    assert!(b.take_log().iter().any(|e| matches!(
        e,
        Effect::Sla {
            kind: SlaKind::FirstResponse,
            level: SlaLevel::Warning,
            ..
        }
    )));
    b.cmd(Command::AgentMessage {
        agent: id("a"),
        conversation: c,
    })
    .unwrap();
    b.advance(3_600_000);
    assert!(!b.take_log().iter().any(|e| matches!(
        e,
        Effect::Sla {
            level: SlaLevel::Breach,
            ..
        }
    )));
}

#[test]
fn sla_actions_boost_widen_and_overflow() {
    let mut s = settings();
    s.queues[1].sla.on_warning = Some(vec![SlaAction::BoostPriority { by: 10 }, SlaAction::Widen]);
    s.queues[1].sla.on_breach = Some(vec![SlaAction::Overflow]);
    let mut b = Bench::with(s);
    let plain = b.open("voice", "general", 5);
    let bill = b.open("voice", "billing", 0);
    b.login("two", &[("billing", 2)], &[("voice", 1)]);
    let (o, c, _) = b.offers()[0].clone();
    assert_eq!(c, plain);
    b.accept("two", o);
    b.advance(16_000); // warning: +10 priority and widened to billing ≥ 2
    let log = b.take_log();
    assert!(
        log.iter()
            .any(|e| matches!(e, Effect::Widened { step: 1, .. })),
        "{log:?}"
    );
    assert_eq!(b.e.conversations[&bill].priority, 10);
    b.complete("two", plain);
    assert_eq!(b.offers()[0].1, bill);

    let mut s = settings();
    s.queues[1].sla.on_breach = Some(vec![SlaAction::Overflow]);
    let mut b = Bench::with(s);
    let bill = b.open("voice", "billing", 0);
    b.login("plain", &[], &[("voice", 1)]);
    assert!(b.offers().is_empty());
    b.advance(20_000);
    let log = b.take_log();
    assert!(log.iter().any(|e| matches!(e, Effect::Overflowed { .. })));
    assert!(log
        .iter()
        .any(|e| matches!(e, Effect::OfferMade { conversation, .. } if *conversation == bill)));
}

#[test]
fn wrap_up_holds_the_slot() {
    let mut s = settings();
    s.channels[0].wrap_up_ms = 5_000;
    let mut b = Bench::with(s);
    b.login("a", &[], &[("voice", 1)]);
    let c = b.open("voice", "general", 0);
    let (o, _, _) = b.offers()[0].clone();
    b.accept("a", o);
    let next = b.open("voice", "general", 0);
    b.complete("a", c);
    assert!(b.offers().is_empty(), "wrapping up");
    b.advance(5_000);
    assert_eq!(b.offers()[0].1, next);
}

#[test]
fn transfer_to_queue_and_to_agent() {
    let mut b = Bench::new();
    b.login("a", &[], &[("voice", 1)]);
    let c = b.open("voice", "general", 0);
    let (o, _, _) = b.offers()[0].clone();
    b.accept("a", o);
    b.cmd(Command::Transfer {
        agent: id("a"),
        conversation: c,
        target: TransferTarget::Queue("support".into()),
    })
    .unwrap();
    assert!(b.offers().is_empty(), "a has no support skill");
    b.login("s", &[("support", 1)], &[("voice", 1)]);
    let (o, _, who) = b.offers()[0].clone();
    assert_eq!(who, "s");
    b.accept("s", o);
    b.login("s2", &[("support", 1)], &[("voice", 1)]);
    b.cmd(Command::Transfer {
        agent: id("s"),
        conversation: c,
        target: TransferTarget::Agent(id("s2")),
    })
    .unwrap();
    assert_eq!(
        b.offers()[0].2,
        "s2",
        "directed transfer goes to the named agent, although s idles longer"
    );
    assert_eq!(
        b.cmd(Command::Transfer {
            agent: id("s"),
            conversation: c,
            target: TransferTarget::Queue("general".into())
        }),
        Err(CommandError::NotYourConversation(c))
    );
}

#[test]
fn switch_channel_goes_back_to_the_previous_agent() {
    let mut b = Bench::new();
    b.login("a", &[], &[("chat", 3), ("voice", 1)]);
    b.advance(10);
    b.login("b", &[], &[("voice", 1)]);
    let c = b.open("chat", "general", 0);
    let (o, _, _) = b.offers()[0].clone();
    b.accept("a", o);
    b.advance(1_000);
    b.cmd(Command::SwitchChannel {
        conversation: c,
        channel: "voice".into(),
    })
    .unwrap();
    let log = b.take_log();
    assert!(log.iter().any(
        |e| matches!(e, Effect::ChannelSwitched { previous_agent: Some(p), .. } if &**p == "a")
    ));
    let offer = log.iter().find_map(|e| match e {
        Effect::OfferMade {
            conversation,
            agent,
            channel,
            ..
        } => Some((*conversation, agent.to_string(), *channel)),
        _ => None,
    });
    assert_eq!(
        offer,
        Some((c, "a".into(), ChannelId(0))),
        "same conversation, same agent, on voice, although b idles longer"
    );
    assert_eq!(
        b.e.agents[0].ch.iter().map(|c| c.used).collect::<Vec<_>>(),
        vec![1, 0, 0, 0, 0],
        "the chat slot was released"
    );
}

#[test]
fn disconnect_reroutes_offers_and_keeps_assigned_for_the_grace() {
    let mut b = Bench::new();
    b.login("a", &[], &[("chat", 2)]);
    let kept = b.open("chat", "general", 0);
    let (o, _, _) = b.offers()[0].clone();
    b.accept("a", o);
    let pending = b.open("chat", "general", 0);
    assert_eq!(b.offers()[0].1, pending);
    b.login("b", &[], &[("chat", 1)]);
    b.cmd(Command::AgentDisconnected { agent: id("a") })
        .unwrap();
    assert_eq!(
        b.offers()[0].2,
        "b",
        "the pending offer is re-routed at once"
    );
    assert!(matches!(b.state(kept), Some(ConvState::Assigned { .. })));
    // reconnect within the grace keeps it
    b.advance(30_000);
    b.login("a", &[], &[("chat", 2)]);
    b.advance(60_000);
    assert!(matches!(b.state(kept), Some(ConvState::Assigned { .. })));
    // a second disconnect past the grace re-queues it
    b.cmd(Command::AgentDisconnected { agent: id("a") })
        .unwrap();
    b.advance(60_000);
    let log = b.take_log();
    assert!(log.iter().any(|e| matches!(e, Effect::Requeued { conversation, reason: "agent_lost", .. } if *conversation == kept)));
    assert_eq!(
        b.state(kept),
        Some(ConvState::Waiting),
        "b's one chat slot is busy"
    );
}

#[test]
fn errors_change_nothing() {
    let mut b = Bench::new();
    b.login("a", &[], &[("voice", 1)]);
    b.login("b", &[], &[("voice", 1)]);
    b.open("voice", "general", 0);
    let (o, _, who) = b.offers()[0].clone();
    let other = if who == "a" { "b" } else { "a" };
    let before = format!("{:?}", b.e.snapshot());
    assert_eq!(
        b.cmd(Command::Accept {
            agent: id(other),
            offer: o
        }),
        Err(CommandError::NotYourOffer(o))
    );
    assert_eq!(
        b.cmd(Command::Accept {
            agent: id("zed"),
            offer: o
        }),
        Err(CommandError::UnknownAgent("zed".into()))
    );
    assert_eq!(
        b.cmd(Command::Accept {
            agent: id(&who),
            offer: OfferId(99)
        }),
        Err(CommandError::UnknownOffer(OfferId(99)))
    );
    assert!(matches!(
        b.cmd(Command::Open {
            channel: "fax".into(),
            queue: None,
            skills: vec![],
            priority: None,
            preferred_agent: None
        }),
        Err(CommandError::UnknownChannel(_))
    ));
    assert!(matches!(
        b.cmd(Command::Open {
            channel: "voice".into(),
            queue: Some("nope".into()),
            skills: vec![],
            priority: None,
            preferred_agent: None
        }),
        Err(CommandError::UnknownQueue(_))
    ));
    assert!(matches!(
        b.cmd(Command::Open {
            channel: "voice".into(),
            queue: None,
            skills: sk(&[("x", 11)]),
            priority: None,
            preferred_agent: None
        }),
        Err(CommandError::BadSkillLevel { .. })
    ));
    assert!(matches!(
        b.cmd(Command::Complete {
            agent: id(&who),
            conversation: ConversationId(1)
        }),
        Err(CommandError::InvalidState { .. })
    ));
    b.e.settings.queues[2].channels = vec!["voice".into()];
    let refused = b.cmd(Command::Open {
        channel: "chat".into(),
        queue: Some("support".into()),
        skills: vec![],
        priority: None,
        preferred_agent: None,
    });
    assert_eq!(refused.unwrap_err().code(), "wrong_channel");
    b.e.settings.queues[2].channels = vec![];
    assert_eq!(before, format!("{:?}", b.e.snapshot()));
}

#[test]
fn restore_resumes_with_the_same_decisions() {
    let mut b = Bench::new();
    for i in 0..5 {
        b.login(
            &format!("a{i}"),
            &[("billing", i as u8 + 1)],
            &[("voice", 1), ("chat", 2)],
        );
    }
    for i in 0..12 {
        b.open(
            if i % 2 == 0 { "voice" } else { "chat" },
            if i % 3 == 0 { "billing" } else { "general" },
            i % 4,
        );
    }
    b.take_log();
    let snap = b.e.snapshot();
    let bytes = bincode::serialize(&snap).unwrap();
    let restored = Engine::restore(settings(), bincode::deserialize(&bytes).unwrap()).unwrap();
    let mut c = Bench {
        e: restored,
        now: b.now,
        log: vec![],
    };
    for bench in [&mut b, &mut c] {
        bench.advance(35_000);
        bench.login("late", &[("billing", 5)], &[("voice", 1)]);
        bench.advance(100_000);
    }
    assert_eq!(b.log, c.log);
    assert!(!b.log.is_empty());
}

// ----- property tests ---------------------------------------------------------

const AGENTS: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    Login {
        agent: usize,
        profile: usize,
        caps: usize,
    },
    Status {
        agent: usize,
        status: AgentStatus,
    },
    Disconnect {
        agent: usize,
    },
    Open {
        channel: usize,
        queue: usize,
        priority: i32,
        preferred: Option<usize>,
    },
    Accept {
        nth: usize,
    },
    Reject {
        nth: usize,
    },
    Complete {
        nth: usize,
    },
    Abandon {
        nth: usize,
    },
    Transfer {
        nth: usize,
        queue: usize,
    },
    Switch {
        nth: usize,
        channel: usize,
    },
    Advance {
        ms: u64,
    },
}

const PROFILES: [&[(&str, u8)]; 4] = [
    &[],
    &[("billing", 3)],
    &[("billing", 2), ("support", 4)],
    &[("support", 1), ("billing", 5)],
];
const CAPS: [&[(&str, u8)]; 3] = [
    &[("voice", 1)],
    &[("chat", 2)],
    &[("voice", 1), ("chat", 3)],
];
const CHANNELS: [&str; 2] = ["voice", "chat"];
const QUEUES: [&str; 3] = ["general", "billing", "support"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..AGENTS, 0..PROFILES.len(), 0..CAPS.len()).prop_map(|(agent, profile, caps)| Op::Login { agent, profile, caps }),
        1 => (0..AGENTS, prop_oneof![Just(AgentStatus::Available), Just(AgentStatus::Away), Just(AgentStatus::Offline)]).prop_map(|(agent, status)| Op::Status { agent, status }),
        1 => (0..AGENTS).prop_map(|agent| Op::Disconnect { agent }),
        4 => (0..2usize, 0..3usize, 0..3i32, proptest::option::weighted(0.2, 0..AGENTS)).prop_map(|(channel, queue, priority, preferred)| Op::Open { channel, queue, priority, preferred }),
        4 => (0..8usize).prop_map(|nth| Op::Accept { nth }),
        2 => (0..8usize).prop_map(|nth| Op::Reject { nth }),
        3 => (0..8usize).prop_map(|nth| Op::Complete { nth }),
        1 => (0..8usize).prop_map(|nth| Op::Abandon { nth }),
        1 => (0..8usize, 0..3usize).prop_map(|(nth, queue)| Op::Transfer { nth, queue }),
        1 => (0..8usize, 0..2usize).prop_map(|(nth, channel)| Op::Switch { nth, channel }),
        3 => prop_oneof![1u64..2_000, 5_000u64..40_000].prop_map(|ms| Op::Advance { ms }),
    ]
}

fn agent_name(i: usize) -> String {
    format!("a{i}")
}

fn apply(b: &mut Bench, op: &Op) {
    let mut offers: Vec<(OfferId, _)> = b.e.offers.iter().map(|(k, v)| (*k, *v)).collect();
    offers.sort_by_key(|(k, _)| *k);
    let mut assigned: Vec<(ConversationId, u32)> =
        b.e.conversations
            .values()
            .filter_map(|c| match c.state {
                ConvState::Assigned { agent, .. } => Some((c.id, agent)),
                _ => None,
            })
            .collect();
    assigned.sort();
    let mut live: Vec<ConversationId> = b.e.conversations.keys().copied().collect();
    live.sort();
    let name = |b: &Bench, a: u32| b.e.agents[a as usize].id.clone();
    let _ = match op {
        Op::Login {
            agent,
            profile,
            caps,
        } => {
            let capacity = Some(
                CAPS[*caps]
                    .iter()
                    .map(|(c, n)| (c.to_string(), *n))
                    .collect(),
            );
            b.cmd(Command::AgentLogin {
                agent: id(&agent_name(*agent)),
                skills: sk(PROFILES[*profile]),
                capacity,
                max_total: None,
            })
        }
        Op::Status { agent, status } => b.cmd(Command::AgentSetStatus {
            agent: id(&agent_name(*agent)),
            status: *status,
        }),
        Op::Disconnect { agent } => b.cmd(Command::AgentDisconnected {
            agent: id(&agent_name(*agent)),
        }),
        Op::Open {
            channel,
            queue,
            priority,
            preferred,
        } => b.cmd(Command::Open {
            channel: CHANNELS[*channel].into(),
            queue: Some(QUEUES[*queue].into()),
            skills: vec![],
            priority: Some(*priority),
            preferred_agent: preferred.map(|p| id(&agent_name(p))),
        }),
        Op::Accept { nth } if !offers.is_empty() => {
            let (o, off) = offers[nth % offers.len()];
            let agent = name(b, off.agent);
            b.cmd(Command::Accept { agent, offer: o })
        }
        Op::Reject { nth } if !offers.is_empty() => {
            let (o, off) = offers[nth % offers.len()];
            let agent = name(b, off.agent);
            b.cmd(Command::Reject { agent, offer: o })
        }
        Op::Complete { nth } if !assigned.is_empty() => {
            let (c, a) = assigned[nth % assigned.len()];
            let agent = name(b, a);
            b.cmd(Command::Complete {
                agent,
                conversation: c,
            })
        }
        Op::Transfer { nth, queue } if !assigned.is_empty() => {
            let (c, a) = assigned[nth % assigned.len()];
            let agent = name(b, a);
            b.cmd(Command::Transfer {
                agent,
                conversation: c,
                target: TransferTarget::Queue(QUEUES[*queue].into()),
            })
        }
        Op::Abandon { nth } if !live.is_empty() => b.cmd(Command::Abandon {
            conversation: live[nth % live.len()],
        }),
        Op::Switch { nth, channel } if !live.is_empty() => b.cmd(Command::SwitchChannel {
            conversation: live[nth % live.len()],
            channel: CHANNELS[*channel].into(),
        }),
        Op::Advance { ms } => {
            b.advance(*ms);
            Ok(Reply::Done)
        }
        _ => Ok(Reply::Done),
    };
}

/// Checks every invariant of the routing semantics against the engine's
/// records, brute force. `step_offers` are the offers made by the last step.
fn check(
    b: &Bench,
    step_offers: &[(ConversationId, u32)],
    waiting_before: &std::collections::HashSet<ConversationId>,
) -> Result<(), TestCaseError> {
    let e = &b.e;
    let now = b.now;
    let nch = e.settings.channels.len();
    // Every offer and assignment is consistent, none held twice.
    let mut holder = std::collections::HashMap::new();
    for (oid, o) in &e.offers {
        let c = e.conversations.get(&o.conversation);
        prop_assert!(c.is_some(), "offer {oid} of a missing conversation");
        prop_assert_eq!(
            c.unwrap().state,
            ConvState::Offered {
                offer: *oid,
                agent: o.agent
            }
        );
        prop_assert!(e.agents[o.agent as usize].offers.contains(oid));
        prop_assert!(
            holder.insert(o.conversation, o.agent).is_none(),
            "conversation offered twice"
        );
    }
    for (a, ag) in e.agents.iter().enumerate() {
        for c in &ag.conversations {
            let conv = e.conversations.get(c);
            prop_assert!(conv.is_some(), "agent holds a missing conversation");
            let held_by_a = matches!(conv.unwrap().state, ConvState::Assigned { agent, .. } if agent as usize == a);
            prop_assert!(
                held_by_a,
                "assigned conversation not marked as held by its agent"
            );
            prop_assert!(
                holder.insert(*c, a as u32).is_none(),
                "conversation held by two agents"
            );
        }
        // Slots in use are exactly offers + assigned + wrap-up, per channel.
        let mut used = vec![0u8; nch];
        for o in &ag.offers {
            used[e.offers[o].channel.0 as usize] += 1;
        }
        for c in &ag.conversations {
            used[e.conversations[c].channel.0 as usize] += 1;
        }
        for (_, ch) in &ag.wrapping {
            used[ch.0 as usize] += 1;
        }
        let recorded: Vec<u8> = ag.ch.iter().map(|c| c.used).collect();
        prop_assert_eq!(&used, &recorded, "slot accounting of {}", ag.id);
        // The compact readiness index agrees with the record: a ready agent is
        // published at its current epoch, any other is unpublished.
        for ch in 0..nch {
            let indexed = e.ready_epoch[a * nch + ch];
            if ag.ready(ch) {
                prop_assert!(
                    indexed == ag.ch[ch].epoch && ag.ch[ch].published == ag.ch[ch].epoch,
                    "ready {} not published on {}",
                    ag.id,
                    ch
                );
            } else {
                prop_assert_eq!(
                    indexed,
                    super::state::UNPUBLISHED,
                    "unready {} still indexed on {}",
                    ag.id,
                    ch
                );
            }
        }
        prop_assert_eq!(
            used.iter().map(|&u| u as u32).sum::<u32>(),
            ag.used_total as u32
        );
    }
    for c in e.conversations.values() {
        match c.state {
            ConvState::Waiting => prop_assert!(!holder.contains_key(&c.id)),
            _ => prop_assert!(
                holder.contains_key(&c.id),
                "conversation {} is {:?} but nobody holds it",
                c.id,
                c.state
            ),
        }
    }
    // Offers of this step went to qualified agents within capacity.
    for (cid, a) in step_offers {
        let Some(c) = e.conversations.get(cid) else {
            continue;
        };
        let ag = &e.agents[*a as usize];
        let ch = c.channel.0 as usize;
        if matches!(c.state, ConvState::Offered { agent, .. } if agent == *a) {
            let qualified = skills::satisfies(&ag.skills, &e.requirements(c));
            prop_assert!(qualified, "misroute: {} lacks skills for {}", ag.id, c.id);
            prop_assert!(
                ag.ch[ch].used <= ag.ch[ch].capacity,
                "capacity exceeded for {}",
                ag.id
            );
        }
    }
    // Work-conserving: no ready qualified agent idles while a conversation it may take waits.
    for c in e
        .conversations
        .values()
        .filter(|c| c.state == ConvState::Waiting)
    {
        let ch = c.channel.0 as usize;
        let req = e.requirements(c);
        for (a, ag) in e.agents.iter().enumerate() {
            let a = a as u32;
            if !ag.ready(ch) || !skills::satisfies(&ag.skills, &req) || c.cooling(a, now) {
                continue;
            }
            match c.preferred {
                Some((p, _)) if p != a => continue,
                _ => {}
            }
            prop_assert!(
                false,
                "agent {} is ready for waiting {} ({:?}) at {}",
                ag.id,
                c.id,
                c,
                now
            );
        }
    }
    // Line order: an offer of this step never skipped a better-placed waiting
    // conversation that the same agent could take.
    for (cid, a) in step_offers {
        let Some(offered) = e.conversations.get(cid) else {
            continue;
        };
        if offered.preferred.is_some_and(|(p, _)| p == *a) {
            continue;
        }
        let ag = &e.agents[*a as usize];
        for w in e
            .conversations
            .values()
            .filter(|w| w.state == ConvState::Waiting && waiting_before.contains(&w.id))
        {
            if w.channel.0 as usize != offered.channel.0 as usize && !ag.ready(w.channel.0 as usize)
            {
                continue;
            }
            if w.preferred.is_some_and(|(p, _)| p != *a)
                || w.cooling(*a, now)
                || !skills::satisfies(&ag.skills, &e.requirements(w))
            {
                continue;
            }
            if ag.ch[w.channel.0 as usize].capacity == 0 {
                continue;
            }
            let ahead = w.priority > offered.priority
                || (w.priority == offered.priority && w.seq < offered.seq);
            prop_assert!(
                !ahead || w.channel != offered.channel,
                "{} was offered {} while {} waited ahead of it",
                ag.id,
                offered.id,
                w.id
            );
        }
    }
    Ok(())
}

fn waiting_set(b: &Bench) -> std::collections::HashSet<ConversationId> {
    b.e.conversations
        .values()
        .filter(|c| c.state == ConvState::Waiting)
        .map(|c| c.id)
        .collect()
}

fn step_offers(log: &[Effect], b: &Bench) -> Vec<(ConversationId, u32)> {
    log.iter()
        .filter_map(|e| match e {
            Effect::OfferMade {
                conversation,
                agent,
                ..
            } => Some((*conversation, b.e.agent_index[agent])),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_step(ops in proptest::collection::vec(op(), 1..120)) {
        let mut b = Bench::new();
        for op in &ops {
            let before = waiting_set(&b);
            if let Op::Advance { ms } = op {
                // Fire each deadline at its own time and check after each.
                let target = b.now + ms;
                while let Some(t) = b.e.poll_timeout() {
                    if t > target {
                        break;
                    }
                    let before = waiting_set(&b);
                    b.now = b.now.max(t);
                    b.e.handle_timeout(b.now);
                    b.drain();
                    let log = b.take_log();
                    check(&b, &step_offers(&log, &b), &before)?;
                }
                b.now = target;
                continue;
            }
            apply(&mut b, op);
            let log = b.take_log();
            let offers = step_offers(&log, &b);
            check(&b, &offers, &before)?;
        }
    }

    #[test]
    fn restore_reproduces_future_decisions(ops in proptest::collection::vec(op(), 2..100), cut in 0usize..100) {
        let cut = cut % ops.len();
        let mut a = Bench::new();
        for op in &ops[..cut] {
            apply(&mut a, op);
        }
        a.take_log();
        let bytes = bincode::serialize(&a.e.snapshot()).expect("encode");
        let snap: CoreSnapshot = bincode::deserialize(&bytes).expect("decode");
        let mut b = Bench { e: Engine::restore(settings(), snap).expect("restore"), now: a.now, log: vec![] };
        for op in &ops[cut..] {
            apply(&mut a, op);
            apply(&mut b, op);
            prop_assert_eq!(a.take_log(), b.take_log());
        }
        prop_assert_eq!(bincode::serialize(&a.e.snapshot()).unwrap(), bincode::serialize(&b.e.snapshot()).unwrap());
    }
}

#[test]
fn floor_stats_count_statuses_slots_and_activity() {
    let mut b = Bench::new();
    b.login("a", &[], &[("chat", 2), ("voice", 1)]);
    b.login("b", &[], &[("chat", 1)]);
    b.login("c", &[], &[("voice", 1)]);
    b.cmd(Command::AgentSetStatus {
        agent: id("c"),
        status: AgentStatus::Away,
    })
    .unwrap();
    b.open("chat", "general", 0);
    let offered = b.offers();
    assert_eq!(offered.len(), 1);
    let holder = offered[0].2.clone();
    let (voice, chat) = (0, 1);

    let f = b.e.floor_stats();
    assert_eq!(f.by_status, [2, 1, 0], "available, away, offline");
    assert_eq!(f.busy_slots[chat], 1, "an offer holds a slot");
    assert_eq!(f.busy_slots[voice], 0);
    // Free chat slots: 3 in all on the two available agents, one held.
    assert_eq!(f.free_slots[chat], 2);
    // Free voice: only `a`'s (`c` is away, so its slot is not free).
    assert_eq!(f.free_slots[voice], 1);
    assert_eq!((f.busy, f.idle, f.away), (1, 1, 1));

    let other = if holder == "a" { "b" } else { "a" };
    b.cmd(Command::AgentDisconnected { agent: id(other) })
        .unwrap();
    let f = b.e.floor_stats();
    assert_eq!(f.by_status, [1, 1, 1]);
    assert_eq!(
        (f.busy, f.idle, f.away),
        (1, 0, 1),
        "offline agents are not counted as idle"
    );
}
