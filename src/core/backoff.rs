//! The reconnect delay: exponential with jitter. The rest of the reconnect policy is
//! decided in supervisor.rs; docs/ARCHITECTURE.md "The reconnect policy" describes the
//! whole of it.
//!
//! Pure arithmetic on purpose: the caller supplies the attempt number and the random draw,
//! so the supervisor owns the state (when to reset) and tests need no clock or RNG.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// The delay before the first retry.
    pub initial: Duration,
    /// The cap of every delay, jitter included.
    pub max: Duration,
    /// Growth per attempt.
    pub multiplier: f64,
    /// The fraction of the delay added or removed at random: 0.2 spreads a delay over
    /// ±20 %, so many clients cut off together do not reconnect together.
    pub jitter: f64,
    /// Consecutive failed attempts allowed: the run gives up once this many in a row have
    /// failed, the first connect included (`attempt >= max` in supervisor.rs). `None`
    /// retries forever.
    pub max_attempts: Option<u32>,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: None,
        }
    }
}

impl BackoffPolicy {
    /// The delay before attempt `attempt` (1-based: the first retry is attempt 1):
    /// `min(max, initial · multiplier^(attempt−1))`, scaled by `1 + jitter·(2·random − 1)`
    /// and clamped to `[0, max]`. `random` is a draw from `[0, 1)`; 0.5 leaves the delay
    /// unchanged.
    ///
    /// Total for any input, even a policy that fails [`validate`](Self::validate): attempt
    /// 0 counts as 1, a huge exponent saturates at `max`, and out-of-range or NaN values of
    /// `random`/`jitter` are clamped rather than trusted.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let max_secs = self.max.as_secs_f64();
        let exponent = f64::from(attempt.saturating_sub(1));
        let grown = self.initial.as_secs_f64() * self.multiplier.powf(exponent);
        // Zero stays zero however large the factor (0·∞ would be NaN); a NaN multiplier
        // has no meaningful size, and the cap is the safe reading of it.
        let base = if self.initial.is_zero() {
            0.0
        } else if grown.is_nan() {
            max_secs
        } else {
            grown.min(max_secs)
        };
        let jitter = clamp_unit(self.jitter, 0.0);
        let random = clamp_unit(random, 0.5);
        let secs = (base * (1.0 + jitter * (2.0 * random - 1.0))).clamp(0.0, max_secs);
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// Checks the policy a caller configured; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.max < self.initial {
            return Err(format!(
                "max ({} ms) must not be below initial ({} ms)",
                self.max.as_millis(),
                self.initial.as_millis()
            ));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(format!(
                "multiplier must be a finite number >= 1, got {}",
                self.multiplier
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "jitter must be between 0 and 1, got {}",
                self.jitter
            ));
        }
        if self.max_attempts == Some(0) {
            return Err("max_attempts must be at least 1 when set".into());
        }
        Ok(())
    }
}

/// The least spacing of connection attempts once the burst is spent: at most four a
/// second, sustained.
pub const MIN_ATTEMPT_GAP: Duration = Duration::from_millis(250);

/// Attempts allowed back to back before [`MIN_ATTEMPT_GAP`] applies: a reconnect right
/// after a lost connection is not slowed by the attempt that made that connection.
pub const ATTEMPT_BURST: f64 = 2.0;

/// A floor under the backoff that no option can lower: a token bucket of
/// [`ATTEMPT_BURST`] attempts refilled at one per [`MIN_ATTEMPT_GAP`]. With
/// `initialDelayMs: 0, maxDelayMs: 0` against a server failing at once, or a server that
/// accepts and drops every connection (which resets the backoff), attempts still come at
/// most 2 + 4·t in any t seconds instead of hundreds a second.
#[derive(Debug, Clone)]
pub struct AttemptPacer {
    tokens: f64,
    at: std::time::Instant,
}

impl AttemptPacer {
    pub fn new(now: std::time::Instant) -> Self {
        AttemptPacer {
            tokens: ATTEMPT_BURST,
            at: now,
        }
    }

    fn refill(&mut self, now: std::time::Instant) {
        let earned =
            now.saturating_duration_since(self.at).as_secs_f64() / MIN_ATTEMPT_GAP.as_secs_f64();
        self.tokens = (self.tokens + earned).min(ATTEMPT_BURST);
        self.at = self.at.max(now);
    }

    /// An attempt starts now.
    pub fn take(&mut self, now: std::time::Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }

    /// How long from `now` until the next attempt may start.
    pub fn wait(&mut self, now: std::time::Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            MIN_ATTEMPT_GAP.mul_f64(1.0 - self.tokens)
        }
    }
}

/// `v` clamped to `[0, 1]`, or `fallback` when it is NaN.
fn clamp_unit(v: f64, fallback: f64) -> f64 {
    if v.is_nan() {
        fallback
    } else {
        v.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_pacer_allows_a_burst_then_four_a_second() {
        let t0 = std::time::Instant::now();
        let mut p = AttemptPacer::new(t0);
        p.take(t0);
        assert_eq!(p.wait(t0), Duration::ZERO, "a second attempt at once");
        p.take(t0);
        assert_eq!(p.wait(t0), MIN_ATTEMPT_GAP);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(p.wait(t1), Duration::from_millis(150));
        // a long pause refills the burst, no more
        let t2 = t0 + Duration::from_secs(60);
        p.take(t2);
        p.take(t2);
        assert_eq!(p.wait(t2), MIN_ATTEMPT_GAP);
    }

    proptest! {
        /// Attempts that always wait as told never exceed 2 + 4·t in any window of t
        /// seconds, whatever the extra delays.
        #[test]
        fn paced_attempts_never_exceed_the_rate(extra in proptest::collection::vec(0u64..400, 1..60)) {
            let t0 = std::time::Instant::now();
            let mut p = AttemptPacer::new(t0);
            let mut now = t0;
            let mut starts = Vec::new();
            for e in extra {
                p.take(now);
                starts.push(now);
                now += p.wait(now).max(Duration::from_millis(e));
            }
            for (i, a) in starts.iter().enumerate() {
                for (j, b) in starts.iter().enumerate().skip(i) {
                    let window = b.duration_since(*a).as_secs_f64();
                    let allowed = ATTEMPT_BURST + window / MIN_ATTEMPT_GAP.as_secs_f64() + 1e-6;
                    prop_assert!(((j - i + 1) as f64) <= allowed, "{} attempts in {window} s", j - i + 1);
                }
            }
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn no_jitter() -> BackoffPolicy {
        BackoffPolicy {
            jitter: 0.0,
            ..BackoffPolicy::default()
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let p = BackoffPolicy::default();
        assert_eq!(
            (p.initial, p.max, p.multiplier, p.jitter, p.max_attempts),
            (ms(1_000), ms(60_000), 2.0, 0.2, None)
        );
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn grows_exponentially_up_to_max() {
        let p = no_jitter();
        let delays: Vec<_> = (1..=8).map(|a| p.delay(a, 0.5)).collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 60, 60].map(|s| ms(s * 1_000)).to_vec()
        );
    }

    #[test]
    fn attempt_zero_counts_as_the_first() {
        assert_eq!(no_jitter().delay(0, 0.5), ms(1_000));
    }

    #[test]
    fn jitter_spreads_the_delay_both_ways() {
        let p = BackoffPolicy::default();
        assert_eq!(p.delay(3, 0.5), ms(4_000));
        assert_eq!(p.delay(3, 0.0), ms(3_200));
        assert_eq!(p.delay(3, 0.75), ms(4_400));
        // just under 1 gives just under +20 %
        let high = p.delay(3, 0.999_999);
        assert!(high > ms(4_799) && high <= ms(4_800), "{high:?}");
    }

    #[test]
    fn jitter_never_exceeds_max() {
        let p = BackoffPolicy::default();
        assert_eq!(p.delay(30, 0.999), ms(60_000));
        assert_eq!(p.delay(30, 0.0), ms(48_000));
    }

    #[test]
    fn huge_attempts_and_multipliers_saturate() {
        let p = BackoffPolicy {
            multiplier: 1e300,
            ..no_jitter()
        };
        assert_eq!(p.delay(u32::MAX, 0.5), ms(60_000));
        assert_eq!(p.delay(3, 0.5), ms(60_000));
        assert_eq!(no_jitter().delay(u32::MAX, 0.5), ms(60_000));
        let p = BackoffPolicy {
            multiplier: f64::INFINITY,
            max: Duration::MAX,
            ..no_jitter()
        };
        assert_eq!(p.delay(2, 0.5), Duration::MAX);
    }

    #[test]
    fn zero_initial_stays_zero() {
        let p = BackoffPolicy {
            initial: Duration::ZERO,
            ..BackoffPolicy::default()
        };
        assert_eq!(p.delay(1, 0.9), Duration::ZERO);
        assert_eq!(p.delay(u32::MAX, 0.9), Duration::ZERO);
    }

    #[test]
    fn out_of_range_inputs_are_clamped() {
        let p = BackoffPolicy::default();
        assert_eq!(p.delay(1, f64::NAN), ms(1_000));
        assert_eq!(p.delay(1, -5.0), ms(800));
        assert_eq!(p.delay(1, 7.0), ms(1_200));
        let wild = BackoffPolicy {
            jitter: 5.0,
            ..BackoffPolicy::default()
        };
        assert_eq!(wild.delay(1, 0.0), Duration::ZERO);
        assert_eq!(wild.delay(1, 1.0), ms(2_000));
        let nan = BackoffPolicy {
            multiplier: f64::NAN,
            jitter: f64::NAN,
            ..BackoffPolicy::default()
        };
        assert_eq!(nan.delay(2, 0.3), ms(60_000));
    }

    #[test]
    fn validate_names_the_field() {
        let bad = [
            (
                BackoffPolicy {
                    initial: ms(2_000),
                    max: ms(1_000),
                    ..BackoffPolicy::default()
                },
                "max",
            ),
            (
                BackoffPolicy {
                    multiplier: 0.5,
                    ..BackoffPolicy::default()
                },
                "multiplier",
            ),
            (
                BackoffPolicy {
                    multiplier: f64::NAN,
                    ..BackoffPolicy::default()
                },
                "multiplier",
            ),
            (
                BackoffPolicy {
                    multiplier: f64::INFINITY,
                    ..BackoffPolicy::default()
                },
                "multiplier",
            ),
            (
                BackoffPolicy {
                    jitter: -0.1,
                    ..BackoffPolicy::default()
                },
                "jitter",
            ),
            (
                BackoffPolicy {
                    jitter: f64::NAN,
                    ..BackoffPolicy::default()
                },
                "jitter",
            ),
            (
                BackoffPolicy {
                    max_attempts: Some(0),
                    ..BackoffPolicy::default()
                },
                "max_attempts",
            ),
        ];
        for (policy, field) in bad {
            let err = policy.validate().unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
        let edge = BackoffPolicy {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 1.0,
            jitter: 1.0,
            max_attempts: Some(1),
        };
        assert_eq!(edge.validate(), Ok(()));
    }

    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(10_000), ..ProptestConfig::default() })]

        #[test]
        fn delay_is_total_and_within_zero_and_max(
            initial_ms in any::<u64>(),
            max_ms in any::<u64>(),
            multiplier in any::<f64>(),
            jitter in any::<f64>(),
            attempt in any::<u32>(),
            random in any::<f64>(),
        ) {
            let p = BackoffPolicy {
                initial: ms(initial_ms),
                max: ms(max_ms),
                multiplier,
                jitter,
                max_attempts: None,
            };
            prop_assert!(p.delay(attempt, random) <= p.max);
        }

        #[test]
        fn valid_policies_never_shrink_without_jitter(
            initial_ms in 0u64..10_000,
            extra_ms in 0u64..1_000_000,
            multiplier in 1.0f64..10.0,
            attempt in 1u32..200,
        ) {
            let p = BackoffPolicy {
                initial: ms(initial_ms),
                max: ms(initial_ms + extra_ms),
                multiplier,
                jitter: 0.0,
                max_attempts: None,
            };
            prop_assert_eq!(p.validate(), Ok(()));
            prop_assert!(p.delay(attempt + 1, 0.5) >= p.delay(attempt, 0.5));
            prop_assert!(p.delay(attempt, 0.5) >= p.initial);
        }
    }
}
