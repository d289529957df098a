//! One rate limit, as every input stream uses it (signaling frames, data-channel
//! messages): `burst` tokens, refilled at `per_second`; each message takes one.
//! Sans-IO: the caller passes the time.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(per_second: f64, burst: f64, now: Instant) -> Self {
        TokenBucket { per_second, burst, tokens: burst, at: now }
    }

    /// Takes one token: true to handle the message, false when over the limit.
    pub fn take(&mut self, now: Instant) -> bool {
        self.take_leaving(now, 0.0)
    }

    /// Takes one token only if `reserve` more stay in the bucket: a lesser claim
    /// that yields to callers of [`TokenBucket::take`].
    pub fn take_leaving(&mut self, now: Instant, reserve: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = self.at.max(now);
        if self.tokens < 1.0 + reserve {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut rate = TokenBucket::new(10.0, 5.0, start);
        assert_eq!((0..8).filter(|_| rate.take(start)).count(), 5, "the burst, then refusals");
        // 0.25 s refills 2.5 tokens: two more.
        let later = start + Duration::from_millis(250);
        assert_eq!((0..4).filter(|_| rate.take(later)).count(), 2);
        // A long pause refills only up to the burst.
        let much_later = later + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| rate.take(much_later)).count(), 5);
        // Time going backwards (an earlier `now`) neither refills nor panics.
        assert!(!rate.take(start));
        // 60/s with bursts of 120 lets a 30 fps page through forever.
        let mut rate = TokenBucket::new(60.0, 120.0, start);
        for frame in 0..3000u64 {
            assert!(rate.take(start + Duration::from_millis(frame * 1000 / 30)));
        }
    }

    #[test]
    fn a_lesser_claim_leaves_the_reserve() {
        let start = Instant::now();
        let mut rate = TokenBucket::new(10.0, 2.0, start);
        assert!(rate.take_leaving(start, 1.0), "full: 2 tokens, one may go");
        assert!(!rate.take_leaving(start, 1.0), "one left: it is the reserve");
        assert!(rate.take(start), "a full claim takes the reserve");
        assert!(!rate.take(start));
    }
}
