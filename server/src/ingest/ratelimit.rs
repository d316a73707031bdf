//! Rate limits: token buckets per contributor pseudonym and for the whole server. A client
//! that is refused gets 429 and retries the same batch later (its key makes that safe).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct RateLimiter {
    per_contributor_per_minute: f64,
    global_per_second: f64,
    global: Mutex<Bucket>,
    contributors: Mutex<HashMap<String, Bucket>>,
}

pub enum Limited {
    Contributor,
    Global,
}

impl RateLimiter {
    pub fn new(per_contributor_per_minute: f64, global_per_second: f64) -> RateLimiter {
        RateLimiter {
            per_contributor_per_minute,
            global_per_second,
            global: Mutex::new(Bucket {
                tokens: global_per_second,
                last: Instant::now(),
            }),
            contributors: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from the global bucket (before the body is even read).
    pub fn check_global(&self) -> Result<(), Limited> {
        let now = Instant::now();
        let mut global = self.global.lock().expect("rate limiter lock");
        if !global.take(now, self.global_per_second, self.global_per_second.max(1.0)) {
            return Err(Limited::Global);
        }
        Ok(())
    }

    /// Takes one token from this pseudonym's bucket.
    pub fn check_contributor(&self, contributor: &str) -> Result<(), Limited> {
        let now = Instant::now();
        let mut map = self.contributors.lock().expect("rate limiter lock");
        let rate = self.per_contributor_per_minute / 60.0;
        let burst = self.per_contributor_per_minute.max(1.0);
        if map.len() > 100_000 {
            // Forget the buckets that have refilled: they would be full again anyway.
            map.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let bucket = map.entry(contributor.to_owned()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        if !bucket.take(now, rate, burst) {
            return Err(Limited::Contributor);
        }
        Ok(())
    }
}
