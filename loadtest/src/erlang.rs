//! The Erlang C queueing formula (M/M/N, infinite patience), used by the
//! `erlang-c` scenario to put the engine's measured waits beside theory.
//!
//! Erlang C is computed from Erlang B with the stable recursion
//! `B(0) = 1, B(k) = A·B(k-1) / (k + A·B(k-1))`, which never forms `A^N` or
//! `N!` and so stays accurate for thousands of agents. This module is pure
//! arithmetic: no clock, no I/O.

use serde::Serialize;

/// Theoretical figures for one M/M/N system.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErlangC {
    pub agents: u32,
    /// Offered load in Erlangs, `A = λ / μ`.
    pub offered_erlangs: f64,
    /// Utilisation `ρ = A / N`.
    pub utilisation: f64,
    /// Probability an arrival has to wait (Erlang C).
    pub p_wait: f64,
    /// Average speed of answer over all arrivals, in ms.
    pub asa_ms: f64,
}

/// Erlang B blocking probability for `n` servers and offered load `a`.
pub fn erlang_b(n: u32, a: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=n {
        b = a * b / (k as f64 + a * b);
    }
    b
}

/// Erlang C: probability of waiting for `n` agents and offered load `a`
/// Erlangs. Returns 1.0 when the system is unstable (`a >= n`).
pub fn erlang_c(n: u32, a: f64) -> f64 {
    if n == 0 || a >= n as f64 {
        return 1.0;
    }
    if a <= 0.0 {
        return 0.0;
    }
    let b = erlang_b(n, a);
    let n = n as f64;
    n * b / (n - a * (1.0 - b))
}

impl ErlangC {
    /// The system with `agents` servers, arrival rate `lambda_per_sec` and
    /// mean handle time `handle_ms`. `None` when it is unstable (`A >= N`).
    pub fn new(agents: u32, lambda_per_sec: f64, handle_ms: f64) -> Option<ErlangC> {
        let mu_per_ms = 1.0 / handle_ms;
        let a = lambda_per_sec * handle_ms / 1000.0;
        if agents == 0 || !a.is_finite() || a >= agents as f64 {
            return None;
        }
        let p_wait = erlang_c(agents, a);
        let asa_ms = p_wait / (mu_per_ms * (agents as f64 - a));
        Some(ErlangC {
            agents,
            offered_erlangs: a,
            utilisation: a / agents as f64,
            p_wait,
            asa_ms,
        })
    }

    /// Service level: probability the wait is at most `t_ms`,
    /// `1 - C · exp(-(N - A) · μ · t)`.
    pub fn service_level(&self, t_ms: f64, handle_ms: f64) -> f64 {
        let rate = (self.agents as f64 - self.offered_erlangs) / handle_ms;
        1.0 - self.p_wait * (-rate * t_ms).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_b_matches_tables() {
        // Classic table values: B(1, 1) = 0.5; B(10, 5) ≈ 0.018385.
        assert!((erlang_b(1, 1.0) - 0.5).abs() < 1e-12);
        assert!((erlang_b(10, 5.0) - 0.018_384_7).abs() < 1e-6);
    }

    #[test]
    fn erlang_c_matches_known_values() {
        // One server: C = ρ.
        assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12);
        // Two servers, A = 1: C = 1/3.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        // The textbook call-centre example: N = 10, A = 8 → C ≈ 0.409.
        assert!(
            (erlang_c(10, 8.0) - 0.409_2).abs() < 5e-4,
            "{}",
            erlang_c(10, 8.0)
        );
    }

    #[test]
    fn direct_formula_agrees_for_small_n() {
        // C = (A^N/N! · N/(N-A)) / (Σ_{k<N} A^k/k! + A^N/N! · N/(N-A)).
        for n in 1..=12u32 {
            for &a in &[0.3, 1.0, 2.5, n as f64 * 0.9] {
                if a >= n as f64 {
                    continue;
                }
                let mut term = 1.0;
                let mut sum = 0.0;
                for k in 0..n {
                    sum += term;
                    term *= a / (k + 1) as f64;
                }
                let top = term * n as f64 / (n as f64 - a);
                let direct = top / (sum + top);
                assert!((erlang_c(n, a) - direct).abs() < 1e-10, "n={n} a={a}");
            }
        }
    }

    #[test]
    fn large_n_is_finite_and_sensible() {
        let c = erlang_c(5000, 4900.0);
        assert!(c.is_finite() && c > 0.0 && c < 1.0, "{c}");
        // More agents for the same load always means less waiting.
        assert!(erlang_c(5001, 4900.0) < c);
    }

    #[test]
    fn unstable_and_degenerate_systems() {
        assert_eq!(erlang_c(3, 3.0), 1.0);
        assert_eq!(erlang_c(0, 1.0), 1.0);
        assert_eq!(erlang_c(3, 0.0), 0.0);
        assert!(ErlangC::new(10, 10.0, 1000.0).is_none());
    }

    #[test]
    fn asa_and_service_level() {
        // N = 2, λ = 1/s, handle 1 s: A = 1, C = 1/3, ASA = C / (μ (N - A)) = 1/3 s.
        let e = ErlangC::new(2, 1.0, 1000.0).expect("stable");
        assert!((e.asa_ms - 1000.0 / 3.0).abs() < 1e-6);
        assert!((e.service_level(0.0, 1000.0) - 2.0 / 3.0).abs() < 1e-12);
        // P(W > 1 s) = C · e^{-1}.
        assert!(
            (1.0 - e.service_level(1000.0, 1000.0) - (1.0 / 3.0) * (-1.0f64).exp()).abs() < 1e-12
        );
    }
}
