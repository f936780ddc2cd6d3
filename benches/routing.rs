//! Routing decision cost of the pure core at 1k, 10k and 100k agents
//! (50 skills, 200 queues), for both kinds of event:
//!
//! - `arrival`: a conversation arrives while capable agents are idle; the
//!   decision picks an agent (timed: `handle(Open)` with the offer it makes).
//! - `agent_frees`: an agent completes a conversation while conversations wait;
//!   the decision picks the next one for it (timed: `handle(Complete)`).
//!
//! Only the decision is timed (`iter_custom`); the accept/complete/open that
//! keep the system in steady state run outside the timed section.
//!
//! Run: `cargo bench --bench routing` (quick: `-- --quick`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::Rng;
use std::hint::black_box;
use std::time::{Duration, Instant};
use switchboard::routing::*;

mod support;

use support::World;

/// Arrival decisions with idle agents available.
fn arrival(c: &mut Criterion) {
    let mut group = c.benchmark_group("arrival");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    for n in [1_000usize, 10_000, 100_000] {
        let mut w = World::new(n);
        let mut held = Vec::new();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let cmd = w.random_open();
                    w.now += 1;
                    let start = Instant::now();
                    let r = w.engine.handle(w.now, cmd);
                    timed += start.elapsed();
                    black_box(r.ok());
                    // Untimed: accept and complete whatever was offered.
                    w.accept_offers(&mut held);
                    w.complete_all(&mut held);
                    w.engine.handle_timeout(w.now);
                    while w.engine.poll_effect().is_some() {}
                }
                timed
            })
        });
        let waiting = w.engine.live_conversations();
        eprintln!("arrival/{n}: live conversations at the end: {waiting} (unmatched arrivals with no capable agent)");
    }
    group.finish();
}

/// Decisions when an agent frees up while conversations wait.
fn agent_frees(c: &mut Criterion) {
    let mut group = c.benchmark_group("agent_frees");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    for n in [1_000usize, 10_000, 100_000] {
        let mut w = World::new(n);
        // Fill every slot (accepting), then put a backlog of waiting conversations.
        let mut assigned = w.fill(n * 3);
        let backlog = w.engine.live_conversations() - assigned.len();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let i = w.rng.random_range(0..assigned.len());
                    let (agent, conversation) = assigned.swap_remove(i);
                    w.now += 1;
                    let start = Instant::now();
                    let r = w.engine.handle(
                        w.now,
                        Command::Complete {
                            agent,
                            conversation,
                        },
                    );
                    timed += start.elapsed();
                    black_box(r.ok());
                    // Untimed: accept what the freed agent was offered, and top the backlog up.
                    w.accept_offers(&mut assigned);
                    let cmd = w.random_open();
                    let _ = w.engine.handle(w.now, cmd);
                    w.engine.handle_timeout(w.now);
                    w.accept_offers(&mut assigned);
                }
                timed
            })
        });
        eprintln!(
            "agent_frees/{n}: backlog at start {backlog}, live at end {}",
            w.engine.live_conversations()
        );
    }
    group.finish();
}

criterion_group!(benches, arrival, agent_frees);
criterion_main!(benches);
