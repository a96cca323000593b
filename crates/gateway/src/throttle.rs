//! Token buckets for stage and route throttling: `rate` tokens per second refill a bucket
//! of `burst` tokens; a request takes one or is refused (429 `Too Many Requests`).
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Starts full, as API Gateway's buckets do.
    pub fn new(rate: f64, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket { rate: rate.max(0.0), burst: burst as f64, tokens: burst as f64, last: now }
    }

    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn same_limits(&self, rate: f64, burst: u32) -> bool {
        self.rate == rate.max(0.0) && self.burst == burst as f64
    }
}

/// Buckets by key (`api/stage/routeKey`), rebuilt when their limits change.
#[derive(Debug, Default)]
pub struct Throttles {
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl Throttles {
    /// Whether a request under `key` may proceed given the limits in force.
    pub fn admit(&self, key: &str, rate: f64, burst: u32, now: Instant) -> bool {
        let mut buckets = self.buckets.lock();
        match buckets.get_mut(key) {
            Some(b) if b.same_limits(rate, burst) => b.try_take(now),
            _ => {
                let mut b = TokenBucket::new(rate, burst, now);
                let ok = b.try_take(now);
                buckets.insert(key.to_string(), b);
                ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3, t0);
        assert!(b.try_take(t0) && b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(400)));
        assert!(b.try_take(t0 + Duration::from_millis(500)));
        // Refill never exceeds the burst.
        let later = t0 + Duration::from_secs(100);
        assert!((0..3).all(|_| b.try_take(later)));
        assert!(!b.try_take(later));
    }

    #[test]
    fn zero_burst_refuses_everything_and_limits_changes_reset() {
        let t = Throttles::default();
        let now = Instant::now();
        assert!(!t.admit("a", 100.0, 0, now));
        assert!(t.admit("a", 1.0, 1, now));
        assert!(!t.admit("a", 1.0, 1, now));
        assert!(t.admit("b", 1.0, 1, now));
    }
}
