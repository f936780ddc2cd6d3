//! The benchmark world shared by the routing benches: `n` agents with 6 of
//! 50 skills each, 200 queues, half the agents on voice (1 slot), half on
//! chat (3 slots).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use switchboard::routing::*;

pub const SKILLS: usize = 50;
pub const QUEUES: usize = 200;

pub fn settings() -> RoutingSettings {
    let mut s = RoutingSettings::example();
    s.queues = (0..QUEUES)
        .map(|i| QueueSettings {
            name: format!("q{i}"),
            skills: vec![(format!("s{}", i % SKILLS), (1 + i / SKILLS) as u8)],
            priority: 0,
            policy: SelectionPolicy::LongestIdle,
            aging_ms_per_point: None,
            widening: vec![],
            overflow_queue: None,
            channels: vec![],
            sla: SlaOverride::default(),
        })
        .collect();
    s.default_queue = "q0".into();
    s
}

/// A world of `n` agents (6 random skills at levels 1..=5 each; half voice 1,
/// half chat 3), with queue names and agent ids prepared.
pub struct World {
    pub engine: Engine,
    queue_names: Vec<String>,
    pub rng: SmallRng,
    pub now: Millis,
}

impl World {
    pub fn new(n: usize) -> Self {
        let mut engine = Engine::new(settings()).expect("valid");
        let mut rng = SmallRng::seed_from_u64(42);
        for i in 0..n {
            let id: AgentId = Arc::from(format!("agent-{i}"));
            let mut skills = Vec::new();
            while skills.len() < 6 {
                let s = format!("s{}", rng.random_range(0..SKILLS));
                if !skills.iter().any(|(n, _)| n == &s) {
                    skills.push((s, rng.random_range(1..=5u8)));
                }
            }
            let capacity = if i % 2 == 0 {
                vec![("voice".to_string(), 1)]
            } else {
                vec![("chat".to_string(), 3)]
            };
            engine
                .handle(
                    0,
                    Command::AgentLogin {
                        agent: id,
                        skills,
                        capacity: Some(capacity),
                        max_total: None,
                    },
                )
                .expect("login");
        }
        let mut w = World {
            engine,
            queue_names: (0..QUEUES).map(|i| format!("q{i}")).collect(),
            rng,
            now: 1,
        };
        // Create every group once (first use of a group is a one-time index build).
        for q in 0..QUEUES {
            for ch in ["voice", "chat"] {
                let c = w.open_cmd(q, ch);
                w.engine.handle(w.now, c).expect("open");
            }
        }
        w.drain_and_settle();
        w
    }

    fn open_cmd(&self, q: usize, channel: &str) -> Command {
        Command::Open {
            channel: channel.into(),
            queue: Some(self.queue_names[q].clone()),
            skills: vec![],
            priority: None,
            preferred_agent: None,
        }
    }

    pub fn random_open(&mut self) -> Command {
        let q = self.rng.random_range(0..QUEUES);
        let ch = if self.rng.random_bool(0.5) {
            "voice"
        } else {
            "chat"
        };
        self.open_cmd(q, ch)
    }

    /// Accepts every offer made so far, adding what each agent now holds to
    /// `assigned`; every other effect is drained.
    pub fn accept_offers(&mut self, assigned: &mut Vec<(AgentId, ConversationId)>) {
        let mut offers = Vec::new();
        while let Some(e) = self.engine.poll_effect() {
            if let Effect::OfferMade {
                offer,
                agent,
                conversation,
                ..
            } = e
            {
                offers.push((offer, agent, conversation));
            }
        }
        for (offer, agent, conversation) in offers {
            let _ = self.engine.handle(
                self.now,
                Command::Accept {
                    agent: agent.clone(),
                    offer,
                },
            );
            assigned.push((agent, conversation));
        }
        while self.engine.poll_effect().is_some() {}
    }

    /// Completes every conversation in `assigned` (emptying it).
    pub fn complete_all(&mut self, assigned: &mut Vec<(AgentId, ConversationId)>) {
        for (agent, conversation) in assigned.drain(..) {
            let _ = self.engine.handle(
                self.now,
                Command::Complete {
                    agent,
                    conversation,
                },
            );
        }
    }

    /// Opens `count` random conversations one ms apart, accepting every
    /// offer: fills the agents' slots, then leaves a backlog waiting. Returns
    /// what the agents hold.
    pub fn fill(&mut self, count: usize) -> Vec<(AgentId, ConversationId)> {
        let mut assigned = Vec::new();
        for _ in 0..count {
            let cmd = self.random_open();
            self.now += 1;
            let _ = self.engine.handle(self.now, cmd);
            self.accept_offers(&mut assigned);
        }
        assigned
    }

    /// Accepts every offer and completes every assigned conversation, until
    /// nothing more is offered.
    pub fn drain_and_settle(&mut self) {
        let mut assigned = Vec::new();
        loop {
            self.now += 1;
            self.accept_offers(&mut assigned);
            if assigned.is_empty() {
                break;
            }
            self.complete_all(&mut assigned);
        }
    }
}
