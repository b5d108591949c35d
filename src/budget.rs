//! Per-caller cost budgets: a leaky bucket per user (or per IP for anonymous callers), sized by
//! role. A request may start only when its requested cost fits in what is available; afterwards
//! the difference between requested and actual cost is given back.
//!
//! With Redis the buckets live there and every replica shares them: one Lua script reads,
//! refills (from Redis's own clock) and debits a bucket atomically. Without Redis they live in
//! the process. If Redis cannot be reached the request is let through (and logged): the budget
//! protects fairness, not correctness, and must not turn a Redis outage into an API outage.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::{Caller, Role};
use crate::config::{BudgetPolicy, Settings};

/// Who a request is billed to: `user:<sub>` or `ip:<address>`, with the role's policy.
#[derive(Debug, Clone)]
pub struct BillingKey {
    /// The bucket key.
    pub key: String,
    /// The bucket size and refill rate.
    pub policy: BudgetPolicy,
}

impl BillingKey {
    /// The bucket of `caller` (anonymous and refused tokens by client IP).
    pub fn of(caller: &Caller, client_ip: &str, settings: &Settings) -> Self {
        let limits = &settings.rate_limit;
        match caller.identity() {
            Some(i) => {
                let policy = if i.is_admin() {
                    limits.admin
                } else if i.has(Role::Vendor) {
                    limits.vendor
                } else {
                    limits.customer
                };
                Self { key: format!("user:{}", i.subject), policy }
            }
            None => Self { key: format!("ip:{client_ip}"), policy: limits.anonymous },
        }
    }
}

/// What a client is told in `extensions.cost.throttleStatus`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleStatus {
    /// Bucket size.
    pub maximum_available: f64,
    /// Points left now.
    pub currently_available: f64,
    /// Points restored per second.
    pub restore_rate: f64,
}

/// A request that does not fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttled {
    /// The bucket now.
    pub status: ThrottleStatus,
    /// Seconds until the request would fit.
    pub retry_after_secs: u64,
}

/// One caller's bucket in the in-process store.
pub struct Bucket {
    available: f64,
    at: Instant,
    policy: BudgetPolicy,
}

const SCRIPT: &str = r#"
local max = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'a', 't')
local a = tonumber(b[1]) or max
local last = tonumber(b[2]) or now
a = math.min(max, a + (now - last) / 1000 * rate)
local ok = 1
if cost > a then ok = 0 else a = math.min(max, a - cost) end
redis.call('HSET', KEYS[1], 'a', tostring(a), 't', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(max / rate * 1000) + 60000)
return {ok, tostring(a)}
"#;

/// Says once in a while (not on every request) that Redis cannot hold the budgets.
fn warn_unavailable(e: &redis::RedisError) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 30 && LAST.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        tracing::warn!(error = %e, "cost budgets unavailable (Redis): letting requests through unbilled (said at most every 30 s)");
    }
}

/// Debits a local bucket as of `now`: whether the points were there, and what is left.
fn take_local(
    buckets: &Mutex<HashMap<String, Bucket>>,
    key: &str,
    cost: f64,
    policy: BudgetPolicy,
    now: Instant,
) -> (bool, f64) {
    let mut buckets = buckets.lock().unwrap_or_else(|e| e.into_inner());
    let bucket = buckets.entry(key.to_string()).or_insert(Bucket { available: policy.maximum, at: now, policy });
    bucket.policy = policy;
    let refilled = bucket.available + now.saturating_duration_since(bucket.at).as_secs_f64() * policy.restore_rate;
    bucket.available = refilled.min(policy.maximum);
    bucket.at = bucket.at.max(now);
    if cost > bucket.available {
        (false, bucket.available)
    } else {
        bucket.available = (bucket.available - cost).min(policy.maximum);
        (true, bucket.available)
    }
}

/// Where buckets live.
pub enum Budgets {
    /// In this process.
    Local(Mutex<HashMap<String, Bucket>>),
    /// In Redis, shared by every replica.
    Redis { manager: crate::redis_client::RedisConn, script: redis::Script, prefix: String },
}

impl Budgets {
    /// Buckets in this process.
    pub fn local() -> Self {
        Self::Local(Mutex::new(HashMap::new()))
    }

    /// Buckets in Redis at `target`, under keys starting with `prefix`.
    /// One key per bucket, so the script runs on the bucket's own shard of a cluster.
    pub fn redis(target: &crate::redis_client::RedisTarget, prefix: &str) -> anyhow::Result<Self> {
        let timeouts =
            crate::redis_client::Timeouts { connect: Duration::from_millis(500), response: Duration::from_millis(500) };
        let manager = crate::redis_client::RedisConn::open(target, timeouts)?;
        Ok(Self::Redis { manager, script: redis::Script::new(SCRIPT), prefix: prefix.to_string() })
    }

    /// Forgets local buckets that have refilled (a full bucket is the same as none), so the
    /// map holds only callers seen recently; Redis expires its buckets by itself.
    pub fn evict_full(&self) -> usize {
        self.evict_full_at(Instant::now())
    }

    /// `evict_full` as of `now` (tests move the clock instead of sleeping).
    fn evict_full_at(&self, now: Instant) -> usize {
        let Self::Local(buckets) = self else { return 0 };
        let mut buckets = buckets.lock().unwrap_or_else(|e| e.into_inner());
        let before = buckets.len();
        buckets.retain(|_, b| {
            b.available + now.duration_since(b.at).as_secs_f64() * b.policy.restore_rate < b.policy.maximum
        });
        before - buckets.len()
    }

    /// The local buckets held (0 with Redis).
    pub fn local_len(&self) -> usize {
        match self {
            Self::Local(buckets) => buckets.lock().unwrap_or_else(|e| e.into_inner()).len(),
            Self::Redis { .. } => 0,
        }
    }

    /// Debits `cost` points from `key`'s bucket if they are there; a negative cost credits.
    pub async fn take(&self, key: &str, cost: f64, policy: BudgetPolicy) -> Result<ThrottleStatus, Throttled> {
        let (ok, available) = match self {
            Self::Local(buckets) => take_local(buckets, key, cost, policy, Instant::now()),
            Self::Redis { manager, script, prefix } => {
                let mut manager = manager.clone();
                let result: redis::RedisResult<(i64, String)> = script
                    .key(format!("{prefix}{key}"))
                    .arg(policy.maximum)
                    .arg(policy.restore_rate)
                    .arg(cost)
                    .invoke_async(&mut manager)
                    .await;
                match result {
                    Ok((ok, a)) => (ok == 1, a.parse().unwrap_or(policy.maximum)),
                    Err(e) => {
                        warn_unavailable(&e);
                        (true, policy.maximum)
                    }
                }
            }
        };
        let status = ThrottleStatus {
            maximum_available: policy.maximum,
            currently_available: available,
            restore_rate: policy.restore_rate,
        };
        if ok {
            Ok(status)
        } else {
            let missing = cost - available;
            let retry_after_secs = (missing / policy.restore_rate).ceil().max(1.0) as u64;
            Err(Throttled { status, retry_after_secs })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_bucket_drains_and_refills() {
        let budgets = Budgets::local();
        let Budgets::Local(buckets) = &budgets else { unreachable!() };
        let policy = BudgetPolicy { maximum: 100.0, restore_rate: 1000.0 };
        // The clock is moved by hand: no sleeps, no timing windows.
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(take_local(buckets, "u", 60.0, policy, t0), (true, 40.0));
        assert_eq!(take_local(buckets, "u", 60.0, policy, t0), (false, 40.0));
        let refused = budgets.take("u", 1000.0, policy).await.unwrap_err();
        assert_eq!(refused.retry_after_secs, 1);
        assert_eq!(budgets.local_len(), 1);
        assert_eq!(budgets.evict_full_at(at(50)), 0, "not refilled yet");
        assert_eq!(budgets.evict_full_at(at(150)), 1, "a refilled bucket is forgotten");
        assert_eq!(budgets.local_len(), 0);
        assert_eq!(take_local(buckets, "u", 60.0, policy, at(150)), (true, 40.0));
        assert_eq!(take_local(buckets, "u", 60.0, policy, at(160)), (false, 50.0), "10 ms refills 10 points");
        assert_eq!(take_local(buckets, "u", 60.0, policy, at(170)), (true, 0.0), "20 ms at 1000/s refilled it");
        assert!(budgets.take("other", 100.0, policy).await.is_ok(), "buckets are per key");
        let credited = budgets.take("other", -500.0, policy).await.unwrap();
        assert_eq!(credited.currently_available, 100.0, "never above the maximum");
    }
}
