//! The machine's floor under a routing decision: how long one dependent read
//! of a cache line takes when the line was last touched long ago, by the
//! size of the memory the reads are spread over.
//!
//! A pointer chase over a random cycle of 64-byte lines: each read's address
//! comes from the previous read, so neither the CPU nor its prefetchers can
//! overlap them, which is the situation of a decision that must read the
//! record of the agent idle the longest (the one touched longest ago) before
//! it knows what to read next. `docs/performance.md` compares these figures
//! with the core's decision cost at 1k and 100k agents.
//!
//! Run: `cargo bench --bench memory_latency`.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::hint::black_box;
use std::time::Instant;

/// One cache line holding the index of the next line of the cycle.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line {
    next: u32,
}

/// Nanoseconds per dependent read over `bytes` of lines in one random cycle.
fn chase(bytes: usize, reads: usize, rng: &mut SmallRng) -> f64 {
    let n = (bytes / std::mem::size_of::<Line>()).max(2);
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(rng);
    let mut lines = vec![Line { next: 0 }; n];
    for w in 0..n {
        lines[order[w] as usize].next = order[(w + 1) % n];
    }
    let mut at = order[0];
    // One lap untimed, so that the timed reads see the steady state.
    for _ in 0..n.min(reads) {
        at = lines[at as usize].next;
    }
    let start = Instant::now();
    for _ in 0..reads {
        at = lines[at as usize].next;
    }
    let elapsed = start.elapsed();
    black_box(at);
    elapsed.as_secs_f64() * 1e9 / reads as f64
}

fn main() {
    let mut rng = SmallRng::seed_from_u64(7);
    println!("dependent reads of 64-byte lines in one random cycle");
    for kib in [256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10] {
        let ns = chase(kib << 10, 10_000_000, &mut rng);
        println!("{:>8} KiB: {ns:6.1} ns per read", kib);
    }
}
