//! Random durations used by the simulation: accept delays, handle times,
//! patience, message gaps and inter-arrival gaps.
//!
//! Every distribution is described in a scenario file (`{ dist = "…", … }`),
//! checked once when the scenario is loaded, and sampled from a seeded
//! generator so that a run can be repeated. This module never reads a clock
//! and never does I/O.

use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal};
use serde::{Deserialize, Serialize};

/// A distribution of durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum Dur {
    /// Always the same value.
    Constant { ms: f64 },
    /// Uniform on `[min_ms, max_ms]`.
    Uniform { min_ms: f64, max_ms: f64 },
    /// Exponential with the given mean (memoryless: Poisson gaps, Erlang handle times).
    Exponential { mean_ms: f64 },
    /// Log-normal with the given mean; `sigma` is the standard deviation of
    /// the underlying normal (0.5 is a moderate right tail, 1.0 a heavy one).
    Lognormal { mean_ms: f64, sigma: f64 },
}

/// A distribution was described with impossible parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct DurError(pub String);

impl Dur {
    /// Checks the parameters; the message names what is wrong.
    pub fn validate(&self) -> Result<(), DurError> {
        let finite_nonneg = |v: f64| v.is_finite() && v >= 0.0;
        match *self {
            Dur::Constant { ms } if !finite_nonneg(ms) => {
                Err(DurError(format!("constant ms {ms} must be >= 0")))
            }
            Dur::Uniform { min_ms, max_ms }
                if !(finite_nonneg(min_ms) && finite_nonneg(max_ms) && min_ms <= max_ms) =>
            {
                Err(DurError(format!(
                    "uniform needs 0 <= min_ms ({min_ms}) <= max_ms ({max_ms})"
                )))
            }
            Dur::Exponential { mean_ms } if !(mean_ms.is_finite() && mean_ms > 0.0) => Err(
                DurError(format!("exponential mean_ms {mean_ms} must be > 0")),
            ),
            Dur::Lognormal { mean_ms, sigma }
                if !(mean_ms.is_finite() && mean_ms > 0.0 && sigma.is_finite() && sigma >= 0.0) =>
            {
                Err(DurError(format!(
                    "lognormal needs mean_ms > 0 and sigma >= 0 (got {mean_ms}, {sigma})"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The distribution's mean in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        match *self {
            Dur::Constant { ms } => ms,
            Dur::Uniform { min_ms, max_ms } => (min_ms + max_ms) / 2.0,
            Dur::Exponential { mean_ms } | Dur::Lognormal { mean_ms, .. } => mean_ms,
        }
    }

    /// One sample in milliseconds (never negative). Parameters must have passed
    /// [`Dur::validate`]; an invalid one samples as its mean rather than panic.
    pub fn sample_ms<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match *self {
            Dur::Constant { ms } => ms,
            Dur::Uniform { min_ms, max_ms } => {
                if max_ms > min_ms {
                    rng.random_range(min_ms..=max_ms)
                } else {
                    min_ms
                }
            }
            Dur::Exponential { mean_ms } => match Exp::new(1.0 / mean_ms) {
                Ok(d) => d.sample(rng),
                Err(_) => mean_ms,
            },
            Dur::Lognormal { mean_ms, sigma } => {
                // E[X] = exp(mu + sigma^2 / 2)  =>  mu = ln(mean) - sigma^2 / 2.
                let mu = mean_ms.ln() - sigma * sigma / 2.0;
                match LogNormal::new(mu, sigma) {
                    Ok(d) => d.sample(rng),
                    Err(_) => mean_ms,
                }
            }
        }
        .max(0.0)
    }

    /// One sample as a `Duration`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.sample_ms(rng) / 1000.0)
    }
}

/// Gap to the next arrival of a Poisson process of `rate_per_sec` (exponential
/// inter-arrival times). `rate_per_sec` must be > 0.
pub fn poisson_gap<R: Rng + ?Sized>(rng: &mut R, rate_per_sec: f64) -> std::time::Duration {
    let secs = match Exp::new(rate_per_sec) {
        Ok(d) => d.sample(rng),
        Err(_) => 1.0,
    };
    std::time::Duration::from_secs_f64(secs)
}

/// Picks an index with probability proportional to its weight. Returns `None`
/// when every weight is zero (or the slice is empty).
pub fn pick_weighted<R: Rng + ?Sized>(rng: &mut R, weights: &[f64]) -> Option<usize> {
    let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = rng.random_range(0.0..total);
    for (i, w) in weights.iter().enumerate() {
        if *w <= 0.0 {
            continue;
        }
        if x < *w {
            return Some(i);
        }
        x -= w;
    }
    weights.iter().rposition(|w| *w > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn mean_and_var(d: &Dur, n: usize) -> (f64, f64) {
        let mut rng = SmallRng::seed_from_u64(7);
        let xs: Vec<f64> = (0..n).map(|_| d.sample_ms(&mut rng)).collect();
        let m = xs.iter().sum::<f64>() / n as f64;
        let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n as f64;
        (m, v)
    }

    #[test]
    fn exponential_has_its_mean_and_variance() {
        let (m, v) = mean_and_var(&Dur::Exponential { mean_ms: 200.0 }, 200_000);
        assert!((m - 200.0).abs() < 3.0, "mean {m}");
        // Var = mean^2 for the exponential.
        assert!((v.sqrt() - 200.0).abs() < 5.0, "sd {}", v.sqrt());
    }

    #[test]
    fn lognormal_mean_is_the_configured_mean() {
        let d = Dur::Lognormal {
            mean_ms: 1000.0,
            sigma: 0.6,
        };
        let (m, v) = mean_and_var(&d, 400_000);
        assert!((m - 1000.0).abs() < 10.0, "mean {m}");
        // Var = (e^{s^2} - 1) * mean^2.
        let want_sd = ((0.36f64.exp() - 1.0) * 1e6).sqrt();
        assert!(
            (v.sqrt() - want_sd).abs() / want_sd < 0.03,
            "sd {} want {want_sd}",
            v.sqrt()
        );
    }

    #[test]
    fn uniform_and_constant_stay_in_range() {
        let mut rng = SmallRng::seed_from_u64(1);
        let u = Dur::Uniform {
            min_ms: 10.0,
            max_ms: 20.0,
        };
        for _ in 0..10_000 {
            let x = u.sample_ms(&mut rng);
            assert!((10.0..=20.0).contains(&x));
        }
        assert_eq!(Dur::Constant { ms: 5.0 }.sample_ms(&mut rng), 5.0);
        assert_eq!(
            Dur::Uniform {
                min_ms: 3.0,
                max_ms: 3.0
            }
            .sample_ms(&mut rng),
            3.0
        );
    }

    #[test]
    fn poisson_gaps_average_one_over_rate() {
        let mut rng = SmallRng::seed_from_u64(3);
        let n = 100_000;
        let total: f64 = (0..n)
            .map(|_| poisson_gap(&mut rng, 500.0).as_secs_f64())
            .sum();
        let mean = total / n as f64;
        assert!((mean - 0.002).abs() < 0.00005, "mean gap {mean}");
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Dur::Exponential { mean_ms: 0.0 }.validate().is_err());
        assert!(Dur::Uniform {
            min_ms: 5.0,
            max_ms: 1.0
        }
        .validate()
        .is_err());
        assert!(Dur::Lognormal {
            mean_ms: 10.0,
            sigma: -1.0
        }
        .validate()
        .is_err());
        assert!(Dur::Constant { ms: f64::NAN }.validate().is_err());
        assert!(Dur::Lognormal {
            mean_ms: 10.0,
            sigma: 0.5
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn weighted_pick_follows_weights_and_skips_zeros() {
        let mut rng = SmallRng::seed_from_u64(9);
        let w = [1.0, 0.0, 3.0];
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            counts[pick_weighted(&mut rng, &w).expect("non-zero weights")] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = counts[2] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "share {share}");
        assert_eq!(pick_weighted(&mut rng, &[0.0, 0.0]), None);
        assert_eq!(pick_weighted(&mut rng, &[]), None);
    }

    #[test]
    fn parses_from_toml() {
        #[derive(Deserialize)]
        struct W {
            d: Dur,
        }
        let w: W = toml::from_str("d = { dist = \"lognormal\", mean_ms = 300, sigma = 0.4 }")
            .expect("parses");
        assert_eq!(
            w.d,
            Dur::Lognormal {
                mean_ms: 300.0,
                sigma: 0.4
            }
        );
        assert!(toml::from_str::<W>("d = { dist = \"exponential\", mean = 3 }").is_err());
    }
}
